"""Reading YAML while remembering where every value came from.

``load_yaml`` returns plain Python data plus a ``SourceMap`` that maps a path of keys and
indices (the same tuples pydantic reports as an error's ``loc``) to its 1-based line (the reader
itself is ``yaml_reader``).  ``read_config_text`` reads any config file, YAML or prototxt, with a
bound on what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainnet.errors import ConfigError, TrainnetError
from trainnet.formats.limits import read_bytes
from trainnet.netcfg.yaml_reader import read_yaml

Path_ = tuple  # a path of keys (str) and list indices (int)
# A config file larger than this is refused unread: reading one takes about 13 times its size
# in memory (as data and lines, or prototxt fields), and a 40,000-layer net is 10 MiB.
MAX_CONFIG_BYTES = 64 * 2**20


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


def load_yaml_text(text: str, file: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse YAML text into plain data and its source map; every problem is a ConfigError."""
    data, lines = read_yaml(text, file)
    return data, SourceMap(file, lines)


def load_yaml(path: str | Path) -> tuple[Any, SourceMap]:
    return load_yaml_text(read_config_text(path), str(path))


def read_config_text(path: str | Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """A config file's text, refused before reading when it is not a regular file (a FIFO,
    ``/dev/zero``, a folder) or holds more than ``limit`` bytes, and read no further than that."""
    path = Path(path)
    try:
        raw = read_bytes(path, "config file", limit)
    except TrainnetError as exc:  # as a ConfigError located at the file, the same words
        raise ConfigError(str(exc).removeprefix(f"{path}: "), file=str(path)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"is not UTF-8 text (byte 0x{raw[exc.start]:02x}): not a config file",
                          file=str(path), line=line) from None
