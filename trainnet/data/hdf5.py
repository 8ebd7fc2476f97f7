"""HDF5 datasets as Caffe's HDF5Data layer reads them.

The layer's ``source`` is a text file naming .h5 files, one per line; each top reads the dataset
of its own name, whose first axis counts the items (every top's dataset must have the same count
within a file, and the same shape beyond the first axis in every file).  Values of any float or
integer type arrive as float32.  As Caffe, a whole file is read into memory when its items are
first needed; the reader keeps the two latest files, which is all a batch can straddle when the
order is shuffled per file (``Sampler`` with blocks).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from trainnet.data.pipeline import Feeder
from trainnet.errors import TrainnetError
from trainnet.formats.hdf5 import check_size, member, open_hdf5
from trainnet.formats.limits import read_text

WHAT = "HDF5 data"


def read_file_list(path: Path) -> list[str]:
    """The names in an HDF5 source list (whitespace-separated, as Caffe reads them)."""
    names = read_text(Path(path), "HDF5 file list").split()
    if not names:
        raise TrainnetError(f"{path}: the list names no HDF5 files")
    return names


class HDF5Source:
    """The files of a list and the datasets ``names`` in each: counts and item shapes."""

    def __init__(self, files: list[Path], names: list[str]):
        self.files, self.names = files, names
        self.counts: list[int] = []
        self.item_shapes: dict[str, tuple[int, ...]] = {}
        for path in files:
            if not path.exists():
                raise TrainnetError(f"{path}: not a readable HDF5 file (no such file)")
            with open_hdf5(path, WHAT) as f:
                self.counts.append(self._check(path, f))
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.n = int(self.offsets[-1])
        if self.n == 0:
            raise TrainnetError(f"the HDF5 files {', '.join(map(str, files))} hold no items")
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def _check(self, path: Path, f) -> int:
        count = None
        for name in self.names:
            ds = member(f, name, str(path))
            if not hasattr(ds, "shape"):
                raise TrainnetError(f"{path}: no dataset named '{name}' (the tops name the "
                                    f"datasets read; the file holds {', '.join(f.keys()) or 'none'})")
            if ds.dtype.kind not in "fiub" or ds.ndim < 1:
                raise TrainnetError(f"{path}: dataset '{name}' is {ds.dtype} of shape {ds.shape}; "
                                    "HDF5Data reads numeric datasets of at least one axis")
            check_size(ds, str(path))
            item = tuple(ds.shape[1:])
            if self.item_shapes.setdefault(name, item) != item:
                raise TrainnetError(f"{path}: dataset '{name}' has items of shape {item}, the first "
                                    f"file's {self.item_shapes[name]}")
            if count is not None and ds.shape[0] != count:
                raise TrainnetError(f"{path}: dataset '{name}' holds {ds.shape[0]} items but "
                                    f"'{self.names[0]}' holds {count}; all must hold as many")
            count = ds.shape[0]
        return count

    def arrays(self, i: int) -> dict[str, np.ndarray]:
        """File ``i``'s datasets as float32 arrays (read once, the two latest kept)."""
        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
            path = self.files[i]
            with open_hdf5(path, WHAT) as f:
                arrays = {n: self._read(path, f, n) for n in self.names}
            if any(len(a) != self.counts[i] for a in arrays.values()):
                raise TrainnetError(f"{path}: changed since the net was compiled")
            self._cache[i] = arrays
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
            return arrays


    @staticmethod
    def _read(path: Path, f, name: str) -> np.ndarray:
        ds = member(f, name, str(path))
        if ds is None or not hasattr(ds, "shape"):
            raise TrainnetError(f"{path}: changed since the net was compiled (no dataset '{name}')")
        check_size(ds, str(path))
        return np.asarray(ds[()], np.float32)


class HDF5Feeder(Feeder):
    """Items gathered from the files that hold them, one vectorized take per file and top."""

    chunked = False

    def __init__(self, source: HDF5Source):
        self.source, self.n, self.blocks = source, source.n, list(source.counts)

    def fill(self, idx, draws, lo, hi, outs):
        idx = idx[lo:hi]
        offsets = self.source.offsets
        which = np.searchsorted(offsets, idx, side="right") - 1
        for f in np.unique(which):
            mask = which == f
            rows = idx[mask] - offsets[f]
            arrays = self.source.arrays(int(f))
            for name, out in zip(self.source.names, outs):
                out[lo:hi][mask] = arrays[name][rows]
