"""HDF5 files as Caffe writes them (its hdf5.cpp helpers), built in memory and written atomically.

Caffe stores an int as a 1-D dataset of one int32 (``H5LTmake_dataset_int``), a string as a
scalar null-terminated fixed-length string (``H5LTmake_dataset_string``) and a blob as a float32
dataset in the blob's shape (``H5LTmake_dataset_float``).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.formats.blobproto import HDF5_MAGIC
from trainnet.formats.limits import check_allocation, regular_file, size_text

# What h5py raises for a damaged file, at any step (opening, walking groups, reading values).
DAMAGE = (OSError, RuntimeError, KeyError, ValueError)
MAX_RATIO = 1100  # bytes of values per stored byte: above gzip's largest expansion (1032)


def is_hdf5(path: Path) -> bool:
    if not Path(path).is_file():  # never open a pipe or a device: it may block or never end
        return False
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_MAGIC)) == HDF5_MAGIC
    except OSError:
        return False


def write_hdf5(path: Path, fill: Callable[[h5py.File], None]) -> None:
    """Build the file in memory with ``fill(file)``, then write it atomically."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
    atomic_write(Path(path), buffer.getvalue())


@contextlib.contextmanager
def open_hdf5(path: Path, what: str) -> Iterator[h5py.File]:
    """``path`` open for reading within the block; a missing, truncated or corrupt file, found
    when opening it or anywhere in the block (a damaged group, link or dataset), is one clear
    error naming the file."""
    path = Path(path)
    regular_file(path, f"{what} file")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except DAMAGE as exc:
        raise damaged(path, exc) from None


def damaged(path: Path, exc: BaseException) -> TrainnetError:
    reason = " ".join(str(exc).split())[:200]
    return TrainnetError(f"{path}: an HDF5 file that cannot be read (truncated or corrupt?): "
                         f"{reason}")


def check_size(item: h5py.Dataset, where: str) -> None:
    """Refuse a dataset whose declared shape needs more bytes than the file stores for it could
    inflate to, or than memory holds, before reading it."""
    need = item.dtype.itemsize
    for d in item.shape or ():
        need *= int(d)
    if not need:
        return
    stored = item.id.get_storage_size()
    if need > MAX_RATIO * stored:
        raise TrainnetError(f"{where}: dataset '{item.name}' declares shape {item.shape} "
                            f"({size_text(need)}) but the file stores {size_text(stored)} of it: "
                            "a corrupt file")
    check_allocation(where, need, f"dataset '{item.name}' of shape {item.shape}")


def save_int(group: h5py.Group, name: str, value: int) -> None:
    group.create_dataset(name, data=np.array([value], np.int32))


def save_string(group: h5py.Group, name: str, value: str) -> None:
    raw = value.encode() + b"\0"
    kind = h5py.h5t.C_S1.copy()
    kind.set_size(len(raw))
    kind.set_strpad(h5py.h5t.STR_NULLTERM)
    dataset = h5py.h5d.create(group.id, name.encode(), kind, h5py.h5s.create(h5py.h5s.SCALAR))
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(raw, dtype=f"S{len(raw)}"))


def save_blob(group: h5py.Group, name: str, array: np.ndarray) -> None:
    group.create_dataset(name, data=np.asarray(array, np.float32))


def load_int(group: h5py.Group, name: str, where: str) -> int:
    value = np.asarray(load(group, name, where))
    if value.size != 1 or value.dtype.kind not in "iu":
        raise TrainnetError(f"{where}: '{name}' holds {value.dtype} of shape {value.shape}, not one "
                            "integer")
    return int(value.reshape(-1)[0])


def load_string(group: h5py.Group, name: str, where: str) -> str:
    value = load(group, name, where)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if not isinstance(value, bytes):
        raise TrainnetError(f"{where}: '{name}' is not a string")
    return value.split(b"\0", 1)[0].decode(errors="replace")


def load_blob(group: h5py.Group, name: str, where: str) -> np.ndarray:
    value = np.asarray(load(group, name, where))
    if value.dtype.kind != "f":
        raise TrainnetError(f"{where}: '{group.name}/{name}' holds {value.dtype}, not floats")
    return value.astype(np.float32, copy=False)


def member(group: h5py.Group, name: str, where: str):
    """``group[name]``, or None when there is no such link, never following an external link:
    its target is another file that could be anything (a pipe, whose opening blocks; a file
    elsewhere).  Soft links within the file are followed (HDF5 refuses a loop)."""
    link = group.get(name, getlink=True)
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise TrainnetError(f"{where}: '{group.name.rstrip('/')}/{name}' is a link into another "
                            f"file ({link.filename}), which is not followed")
    return group.get(name)


def check_links(group: h5py.Group, where: str) -> None:
    """Refuse a link into another file anywhere under ``group`` (see ``member``); h5py before
    3.11 cannot list links, and reading then relies on ``member``."""
    if not hasattr(group, "visititems_links"):
        return
    found: list[tuple[str, object]] = []
    group.visititems_links(lambda name, link: found.append((name, link)))
    for name, link in found:
        if isinstance(link, h5py.ExternalLink):
            raise TrainnetError(f"{where}: '{group.name.rstrip('/')}/{name}' is a link into another "
                                f"file ({link.filename}), which is not followed")


def load(group: h5py.Group, name: str, where: str):
    """The value of dataset ``name`` of ``group``; a missing or unreadable one is an error."""
    item = member(group, name, where)
    if not isinstance(item, h5py.Dataset):
        raise TrainnetError(f"{where}: no dataset '{name}' in group '{group.name}'")
    check_size(item, where)
    try:
        return item[()]
    except (OSError, TypeError, ValueError) as exc:
        raise TrainnetError(f"{where}: cannot read '{item.name}' (truncated or corrupt?): {exc}") from None
