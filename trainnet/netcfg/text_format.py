"""Protobuf text format, tokenized by hand so that every value keeps its line.

protobuf's own text parser keeps no line numbers for the values it reads, and every config
error here must name its line; and it needs the schema of every message, where trainnet
validates with its pydantic models.  ``parse_text`` gives the fields of a document in order;
``to_data`` turns them into the plain data and line map that the YAML reader also produces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Union

from trainnet.errors import ConfigError


@dataclass
class Field:
    """One ``key: value`` or ``key { ... }`` of a message, with the line it starts on."""

    key: str
    value: Union[Any, list["Field"]]  # a scalar, or the fields of a nested message
    line: int
    message: bool = False


# --- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+|\#[^\n]*) |
    (?P<newline>\n) |
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?[fF]?(?![\w.])|[-+]?(?:inf|nan)\b) |
    (?P<ident>[A-Za-z_][\w.]*) |
    (?P<symbol>[{}<>:\[\],;]) |
    (?P<bad>.)
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def _tokens(text: str, file: str) -> Iterator[tuple[str, Any, int]]:
    """The tokens of ``text`` one at a time (a list of them took more memory than the fields)."""
    line, pending = 1, None   # pending: a string that the next may continue
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "space":
            continue
        if kind == "newline":
            line += 1
            continue
        raw = m.group()
        if kind == "string":
            body = raw[1:-1]
            if "\\" in body:
                body = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), body)
            # adjacent strings concatenate, as in protobuf
            pending = ("string", body, line) if pending is None else \
                ("string", pending[1] + body, pending[2])
            continue
        if kind == "bad":
            raise ConfigError(f"prototxt syntax error: unexpected {raw!r}", file=file, line=line)
        if pending is not None:
            yield pending
            pending = None
        yield ("number", _number(raw), line) if kind == "number" else (kind, raw, line)
    if pending is not None:
        yield pending


def _number(raw: str) -> Union[int, float]:
    text = raw.rstrip("fF") if not raw.lower().endswith(("inf", "nan")) else raw
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return float(text)


MAX_DEPTH = 100  # messages nest a handful of levels in any real config
_END = ("end", None, None)


class _Parser:
    def __init__(self, text: str, file: str):
        self.tokens, self.file, self.depth = _tokens(text, file), file, 0
        self.tok, self.line = _END, None
        self.advance()

    def advance(self) -> None:
        """Move to the next token (the line of the last real one is kept for errors at the end)."""
        self.tok = next(self.tokens, _END)
        if self.tok[2] is not None:
            self.line = self.tok[2]

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"prototxt syntax error: {message}", file=self.file, line=self.line)

    def peek(self):
        return self.tok

    def message(self, close: str | None) -> list[Field]:
        fields = []
        while True:
            kind, value, line = self.peek()
            if close is None and kind == "end":
                return fields
            if kind == "symbol" and value == close:
                self.advance()
                return fields
            if kind == "symbol" and value in ",;":
                self.advance()
                continue
            if kind != "ident":
                raise self.error(f"expected a field name, found {'the end of the file' if kind == 'end' else repr(value)}")
            self.advance()
            fields.extend(self.field(value, line))

    def field(self, key: str, line: int) -> list[Field]:
        kind, value, _ = self.peek()
        if kind == "symbol" and value == ":":
            self.advance()
            kind, value, _ = self.peek()
            if kind == "symbol" and value == "[":  # key: [a, b] or key: [{...}, {...}]
                self.advance()
                items = []
                while not (self.peek()[0] == "symbol" and self.peek()[1] == "]"):
                    items.extend(self.field(key, self.peek()[2] or line))
                    if self.peek()[1] == ",":
                        self.advance()
                self.advance()
                return items
        if kind == "symbol" and value in "{<":
            self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"messages nested deeper than {MAX_DEPTH} levels: not a config")
            fields = self.message("}" if value == "{" else ">")
            self.depth -= 1
            return [Field(key, fields, line, message=True)]
        if kind in ("string", "number"):
            self.advance()
            return [Field(key, value, line)]
        if kind == "ident":
            self.advance()
            return [Field(key, {"true": True, "false": False}.get(value, value), line)]
        raise self.error(f"expected a value for '{key}'")


def parse_text(text: str, file: str) -> list[Field]:
    """The fields of a whole prototxt document."""
    return _Parser(text, file).message(None)


# --- to plain data ---------------------------------------------------------------------------

def to_data(fields: list[Field], path: tuple, lines: dict) -> dict:
    """Fields as a dict: a key given once holds its value, a key given more than once a list
    (Caffe's repeated fields; the config models accept a lone value for a repeated field)."""
    grouped: dict[str, list[Field]] = {}
    for f in fields:
        grouped.setdefault(f.key, []).append(f)
    out: dict[str, Any] = {}
    for key, group in grouped.items():
        lines[path + (key,)] = group[0].line
        if len(group) == 1:
            out[key] = _value(group[0], path + (key,), lines)
        else:
            out[key] = []
            for i, f in enumerate(group):
                lines[path + (key, i)] = f.line
                out[key].append(_value(f, path + (key, i), lines))
    return out


def _value(f: Field, path: tuple, lines: dict) -> Any:
    return to_data(f.value, path, lines) if f.message else f.value
