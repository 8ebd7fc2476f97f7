"""How the config reader resolves scalars, and a dumper that writes what it reads back.

YAML 1.2's core schema for numbers: ``1e-3``, ``5E-4``, ``.5e-3`` and ``1e400`` (inf) are floats
(YAML 1.1, PyYAML's default, reads them as strings, the exponent form every Caffe user writes),
``010`` is ten (not octal eight) and ``1:30`` a string.  Booleans and nulls as YAML 1.1 has them
(``yes``/``no``/``on``/``off`` too).  Timestamps are not resolved: a config has no dates, and
``2001-13-45`` stays the string it is.  Of the explicit tags, only YAML's plain types.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from trainnet.errors import ConfigError

_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {v: True for v in ("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")}
_BOOLS.update({v: False for v in ("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")})
_INT = re.compile(r"[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)")
_FLOAT = re.compile(r"[-+]?(?:(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
                    r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF))|\.(?:nan|NaN|NAN)")
_NUMERIC_START = frozenset("-+0123456789.")
TAG = "tag:yaml.org,2002:"


def _int(text: str) -> int:
    text = text.replace("_", "")
    sign, body = (text[0], text[1:]) if text[0] in "+-" else ("", text)
    base = {"0x": 16, "0o": 8, "0b": 2}.get(body[:2], 10)
    return int(sign + (body[2:] if base != 10 else body), base)


def _float(text: str) -> float:
    text = text.replace("_", "").lower()
    return float(text.replace(".inf", "inf").replace(".nan", "nan"))


def plain_scalar(text: str) -> Any:
    """An untagged, unquoted scalar: null, bool, int, float (YAML 1.2 numbers) or str."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if text[0] in _NUMERIC_START:
        try:
            if _INT.fullmatch(text):
                return _int(text)
            if _FLOAT.fullmatch(text):
                return _float(text)
        except ValueError:  # "1__0": looks numeric but is not
            pass
    return text


def tagged(tag: str, text: str, line: int, file: str) -> Any:
    kind = tag[len(TAG):] if tag.startswith(TAG) else None
    try:
        if tag == "!" or kind == "str":
            return text
        if kind == "int":
            return _int(text)
        if kind == "float":
            return _float(text)
        if kind == "bool" and text in _BOOLS:
            return _BOOLS[text]
        if kind == "null" and text in _NULLS:
            return None
    except (ValueError, IndexError):
        raise ConfigError(f"{text!r} is not a valid !!{kind}", file=file, line=line) from None
    if kind in ("bool", "null"):
        raise ConfigError(f"{text!r} is not a valid !!{kind}", file=file, line=line)
    raise ConfigError(unsupported_tag(tag), file=file, line=line)


def unsupported_tag(tag: str) -> str:
    shown = "!!" + tag[len(TAG):] if tag.startswith(TAG) else tag
    return f"the tag {shown} is not supported in a config (plain values, lists and mappings only)"


class Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting every string this reader would take for a number (``'1e3'``,
    ``'.5'``): its own YAML 1.1 rules leave those plain, and they would read back as floats."""


Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
Dumper.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
