"""Where a config's data path points: TRAINNET_DATA, then the config's folder, then the cwd,
then ./data (where `trainnet data mnist` puts datasets when TRAINNET_DATA is unset)."""

from __future__ import annotations

import contextlib
import contextvars
import os
from pathlib import Path
from typing import Iterator, Optional

from trainnet.errors import TrainnetError

ENV = "TRAINNET_DATA"
DEFAULT_ROOT = Path("data")  # relative to the cwd
_BASE_DIR: contextvars.ContextVar[Optional[Path]] = contextvars.ContextVar("data_base_dir",
                                                                          default=None)


@contextlib.contextmanager
def data_base_dir(path: Optional[Path]) -> Iterator[None]:
    """Within the block, data layers resolve relative paths against ``path`` (a config's folder)."""
    token = _BASE_DIR.set(Path(path) if path is not None else None)
    try:
        yield
    finally:
        _BASE_DIR.reset(token)


def current_base_dir() -> Path:
    """The folder set by ``data_base_dir``, else the cwd."""
    return _BASE_DIR.get() or Path.cwd()


def candidates(path: str, base_dir: Path) -> list[Path]:
    """Every place a data path may be, in the order they are tried."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    places = []
    env = os.environ.get(ENV)
    if env:
        places.append(Path(env).expanduser() / p)
    places += [Path(base_dir) / p, Path.cwd() / p, Path.cwd() / DEFAULT_ROOT / p]
    return list(dict.fromkeys(places))  # drop repeats (base_dir may be the cwd)


def resolve_data_path(path: str, base_dir: Path) -> Path:
    """The first existing place for ``path``; none existing is a TrainnetError listing them."""
    places = candidates(path, base_dir)
    for place in places:
        if place.exists():
            return place
    tried = ", ".join(str(p) for p in places)
    hint = "run `trainnet data mnist` to download MNIST"
    if not Path(path).expanduser().is_absolute():
        hint = f"set {ENV} to the folder holding it, or {hint}"
    raise TrainnetError(f"data file '{path}' not found (tried {tried}); {hint}")
