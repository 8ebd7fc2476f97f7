"""Reading YAML while remembering where every value came from.

``load_yaml`` returns plain Python data plus a ``SourceMap`` that maps a path of keys and
indices (the same tuples pydantic reports as an error's ``loc``) to its 1-based line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainnet.errors import ConfigError

Path_ = tuple  # a path of keys (str) and list indices (int)


@dataclass
class SourceMap:
    """Where each value of a loaded document sits: file name and line per path."""

    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    # Errors a reader found in a part it could not turn into data (a prototxt layer whose
    # parameter messages are misplaced), by that part's path: the parser reports them with its own.
    errors: dict[Path_, ConfigError] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest located ancestor."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def sub(self, prefix: Path_) -> "SourceMap":
        """The map of the sub-document at ``prefix``, with paths relative to it."""
        n, prefix = len(prefix), tuple(prefix)
        return SourceMap(self.file, {p[n:]: l for p, l in self.lines.items() if p[:n] == prefix},
                         {p[n:]: e for p, e in self.errors.items() if p[:n] == prefix})

    def error(self, path: Path_, message: str, **context: Any) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line(path), **context)


def _to_python(node: yaml.Node, path: Path_, lines: dict, file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _to_python(key_node, path + ("<key>",), {}, file)
            if not isinstance(key, str):
                raise ConfigError(f"keys must be strings, got {key!r}", file=file,
                                  line=key_node.start_mark.line + 1)
            if key in out:
                raise ConfigError(f"duplicate key '{key}'", file=file, line=key_node.start_mark.line + 1)
            out[key] = _to_python(value_node, path + (key,), lines, file)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, path + (i,), lines, file) for i, v in enumerate(node.value)]
    return _scalar(node, file)


def _scalar(node: yaml.ScalarNode, file: str) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # e.g. a bad timestamp
        raise ConfigError(f"bad value: {exc}", file=file, line=node.start_mark.line + 1) from None
    finally:
        loader.dispose()


def load_yaml_text(text: str, file: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse YAML text into plain data and its source map; syntax errors become ConfigError."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"YAML syntax error: {exc.problem or exc}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=file) from None
    lines: dict[Path_, int] = {}
    if node is None:
        raise ConfigError("the file is empty", file=file)
    data = _to_python(node, (), lines, file)
    return data, SourceMap(file, lines)


def load_yaml(path: str | Path) -> tuple[Any, SourceMap]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    return load_yaml_text(text, str(path))
