"""HDF5Output: writes its two bottoms to an HDF5 file, as datasets "data" and "label".

Caffe's HDF5OutputLayer writes each forward's bottoms to ``file_name`` (truncated when the net
is built), each as a 4-D num x channels x height x width array (a label batch (N,) is stored
(N, 1, 1, 1)); where Caffe can write only one batch (a second write collides with the first),
each forward here appends its batch along the first axis, and the file is flushed after every
write, so what has been written survives an interrupted run.  ``file_name`` is relative to the working
directory, as Caffe's.  On a GPU the bottoms are copied to the host each pass, so a net holding
this layer runs without CUDA graph replay.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from trainnet.errors import TrainnetError
from trainnet.layers.base import StepIO, register
from trainnet.layers.no_backward import NoBackward
from trainnet.netcfg.common import Strict

DATASETS = ("data", "label")  # Caffe's HDF5_DATA_DATASET_NAME, HDF5_DATA_LABEL_NAME


class HDF5OutputParams(Strict):
    file_name: str = Field(min_length=1)


class HDF5Writer:
    """An HDF5 file whose datasets grow by one batch per ``append``."""

    def __init__(self, path: Path, shapes: list[tuple[int, ...]]):
        import h5py

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = h5py.File(path, "w")
        except OSError as exc:
            raise TrainnetError(f"{path}: cannot create the HDF5 output file ({exc})") from None
        self.path = path
        self.shapes = [caffe_4d(s) for s in shapes]
        self.datasets = [self.file.create_dataset(name, shape=(0,) + s[1:], maxshape=(None,) + s[1:],
                                                  dtype=np.float32, chunks=True)
                         for name, s in zip(DATASETS, self.shapes)]

    def append(self, arrays: list[np.ndarray]) -> None:
        try:
            for ds, a, shape in zip(self.datasets, arrays, self.shapes):
                n = ds.shape[0]
                ds.resize(n + len(a), axis=0)
                ds[n:] = np.asarray(a).reshape(shape)
            self.file.flush()
        except OSError as exc:
            raise TrainnetError(f"{self.path}: cannot write ({exc})") from None

    def close(self) -> None:
        self.file.close()

    def __del__(self):
        file = getattr(self, "file", None)
        if file is not None and file.id.valid:
            file.close()


def caffe_4d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A blob's shape as Caffe's num/channels/height/width, which count missing axes as 1."""
    return tuple(shape) + (1,) * (4 - len(shape)) if len(shape) <= 4 else tuple(shape)


@register("HDF5Output")
class HDF5Output(NoBackward):
    Params = HDF5OutputParams
    caffe_params = {"hdf5_output_param": None}
    num_bottoms = (2, 2)
    num_tops = (0, 0)
    host_only = True

    def setup(self, bottom_shapes):
        data, label = bottom_shapes
        if not data or not label or data[0] != label[0]:
            raise self.error(f"data {data} and label {label} must hold the same number of items")
        return []

    def make_state(self, rng, device=None):
        return HDF5Writer(Path(self.p.file_name), self.bottom_shapes)

    def forward_cpu(self, io: StepIO):
        io.state.append(io.bottom)

    def forward_gpu(self, io: StepIO):
        io.state.append([io.gpu.download(b) for b in io.bottom])
