"""Turning pydantic's validation errors into one located, readable ConfigError."""

from __future__ import annotations

import difflib
from typing import Iterable, Optional

from pydantic import ValidationError

from trainnet.errors import ConfigError
from trainnet.netcfg.source import SourceMap


def _message(err: dict, known_keys: Iterable[str]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, list(known_keys), n=1, cutoff=0.6)
        return "unknown key" + (f" (did you mean '{close[0]}'?)" if close else
                                f"; known keys: {', '.join(sorted(known_keys))}")
    if kind == "missing":
        return "required"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, got {value!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {value!r}"
    kinds = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
             "string_type": "a string", "list_type": "a list", "model_type": "a mapping",
             "dict_type": "a mapping", "int_from_float": "an integer"}
    if kind in kinds:
        return f"expects {kinds[kind]}, got {type(value).__name__} {value!r}"
    if kind == "too_short":
        return f"must not be empty"
    msg = err["msg"]
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def located(exc: ValidationError, src: SourceMap, prefix: tuple = (), *, layer: Optional[str] = None,
            layer_type: Optional[str] = None, known_keys: Iterable[str] = ()) -> ConfigError:
    """The first (topmost in the file) error of ``exc`` as a ConfigError with file and line."""
    errors = exc.errors()

    def where(err):
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        return loc, src.line(prefix + loc) or 0

    errors.sort(key=lambda e: where(e)[1])
    err = errors[0]
    loc, line = where(err)
    keys = known_keys
    if err["type"] == "extra_forbidden" and len(loc) > 1:
        keys = ()  # a nested model: pydantic lists no alternatives; keep the hint generic
    field = ".".join(str(x) for x in loc if not str(x).startswith(("list[", "literal[")))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(_message(err, keys) + more, file=src.file, line=line or None,
                       layer=layer, layer_type=layer_type, field=field or None)
