"""Where a config's data path points.

A relative path in a YAML config is looked up under $TRAINNET_DATA, then beside the config,
then in the working directory, then under ./data (where `trainnet data` puts datasets when
TRAINNET_DATA is unset).  A Caffe prototxt means its paths relative to the working directory
(Caffe's examples run from Caffe's root), so for one the working directory comes first, then the
config's folder, then $TRAINNET_DATA and ./data.  A miss lists every place tried, in order.

Which config a path belongs to is said explicitly: the compiler builds one ``DataRoot`` for the
net's file and gives it to each layer it builds (``Layer(..., data_root=...)``).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from trainnet.errors import TrainnetError

ENV = "TRAINNET_DATA"
DEFAULT_ROOT = Path("data")  # relative to the cwd
PROTOTXT_SUFFIXES = (".prototxt", ".pbtxt", ".prototext")


@dataclass(frozen=True)
class DataRoot:
    """Where a config's relative data paths start: the config's folder (None: no config, the
    working directory) and whether it is a Caffe prototxt (the working directory first)."""

    folder: Optional[Path] = None
    caffe: bool = False

    @classmethod
    def of(cls, file: Optional[str | Path]) -> "DataRoot":
        """The root of the config ``file`` (None: no config)."""
        if not file:
            return cls()
        path = Path(file).resolve()
        return cls(path.parent, path.suffix.lower() in PROTOTXT_SUFFIXES)

    @property
    def base_dir(self) -> Path:
        return self.folder if self.folder is not None else Path.cwd()


Base = Union[DataRoot, str, Path, None]


def as_root(base: Base) -> DataRoot:
    """``base`` as a DataRoot: a folder stands for a YAML config in it, None for no config."""
    return base if isinstance(base, DataRoot) else DataRoot(Path(base) if base else None)


def candidates(path: str, base: Base = None) -> list[Path]:
    """Every place a data path may be, in the order they are tried."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    root = as_root(base)
    base_dir, caffe = root.base_dir, root.caffe
    env = os.environ.get(ENV)
    rooted = [Path(env).expanduser() / p] if env else []
    if caffe:
        places = [Path.cwd() / p, base_dir / p] + rooted
    else:
        places = rooted + [base_dir / p, Path.cwd() / p]
    places.append(Path.cwd() / DEFAULT_ROOT / p)
    return list(dict.fromkeys(places))  # drop repeats (base_dir may be the cwd)


def not_found(path: str, places: list[Path], what: str = "data file", hint: str = "",
              caffe: bool = False) -> TrainnetError:
    tried = ", ".join(str(p) for p in places)
    if "mnist" in path.lower():
        hint = "; ".join(filter(None, [hint, "`trainnet data mnist` downloads MNIST"]))
    elif "cifar" in path.lower():
        hint = "; ".join(filter(None, [hint, "`trainnet data cifar10` downloads CIFAR-10"]))
    elif not hint:
        hint = "`trainnet data` fetches and converts Caffe's example datasets"
    if not Path(path).expanduser().is_absolute():
        order = ("relative paths of a Caffe prototxt start from the working directory, as in Caffe"
                 if caffe else f"set {ENV} to the folder holding it")
        hint = f"{order}; {hint}"
    return TrainnetError(f"{what} '{path}' not found (tried {tried}); {hint}")


def resolve_data_path(path: str, base: Base = None, what: str = "data file",
                      hint: str = "") -> Path:
    """The first existing place for ``path``; none existing is a TrainnetError listing them."""
    places = candidates(path, base)
    for place in places:
        if place.exists():
            return place
    raise not_found(path, places, what, hint, as_root(base).caffe)


def resolve_data_glob(pattern: str, base: Base = None, what: str = "data files") -> list[Path]:
    """The files a glob pattern (``cifar10/data_batch_*.bin``) matches at the first place where
    it matches any, sorted; a plain path is its own one match."""
    if not glob.has_magic(pattern):
        return [resolve_data_path(pattern, base, what)]
    places = candidates(pattern, base)
    for place in places:
        found = sorted(Path(p) for p in glob.glob(str(place)))
        if found:
            return found
    raise not_found(pattern, places, what, caffe=as_root(base).caffe)


def list_base(first: str, list_file: Path, caffe: bool = False) -> Path:
    """The folder the relative paths in a list file (an image list, an HDF5 file list) start
    from: for a Caffe prototxt the working directory (as Caffe), then the list's folder; for a
    YAML config the list's folder, then the working directory.  The first entry decides."""
    if Path(first).is_absolute():
        return Path("/")
    bases = [Path.cwd(), Path(list_file).parent]
    if not caffe:
        bases.reverse()
    for base in bases:
        if (base / first).exists():
            return base
    raise TrainnetError(f"{list_file}: its first entry {first} is in neither "
                        + " nor ".join(str(b) for b in bases))
