"""pycaffe's ``Blob`` and ``BlobVec`` for Python layers, and the binding of a step's arrays to them.

A Python layer sees its bottoms, tops and parameters as blobs whose ``data`` and ``diff`` are
the arrays the plan assigned: ``StepBlobs`` makes the wrappers once per step (when a Net binds
it) and points them at the step's arrays before each call, so a pass makes no wrappers.  On a GPU
the arrays are host copies (bottoms downloaded before the call, tops and gradients uploaded
after it) unless the layer's class sets ``cupy_arrays = True``.  A blob's shape is fixed once the
net is compiled: reshaping it to another shape after ``setup`` is an error naming the layer.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from trainnet.errors import TrainnetError

Shape = tuple[int, ...]
_ZERO = np.zeros((), np.float32)


def shape_only(shape: Shape) -> np.ndarray:
    """A read-only float32 array of ``shape`` that takes no memory (zeros): what ``setup`` and
    ``reshape`` see of bottoms and tops, whose contents do not exist yet."""
    return np.broadcast_to(_ZERO, shape)


def _as_shape(shape: tuple) -> Shape:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


class Blob:
    """pycaffe's Blob: ``data`` and ``diff`` arrays of one shape, with Caffe's shape accessors.

    ``owner`` names the layer for errors; a ``fixed`` blob (bound to a compiled net) refuses
    a new shape."""

    def __init__(self, data, diff, owner: str = "", fixed: bool = False):
        self.data = data
        self.diff = diff
        self.owner = owner
        self.fixed = fixed

    @property
    def shape(self) -> Shape:
        return tuple(self.data.shape)

    @property
    def count(self) -> int:
        return math.prod(self.data.shape)

    def _legacy(self, axis: int) -> int:
        shape = self.data.shape
        return int(shape[axis]) if axis < len(shape) else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def reshape(self, *shape) -> None:
        """A new shape: free before the net is compiled (in ``setup``/``reshape``), an error
        after it, where every blob's memory is planned."""
        new = _as_shape(shape)
        if new == self.shape:
            return
        if self.fixed:
            raise TrainnetError(
                f"{self.owner}: reshapes a blob from {self.shape} to {new} after setup; the net's "
                "shapes are fixed when it is compiled (reshape the net's inputs to re-plan it)")
        if self.data.flags.writeable:  # a learnable blob: real memory, zeroed
            self.data, self.diff = np.zeros(new, np.float32), np.zeros(new, np.float32)
        else:
            self.data = self.diff = shape_only(new)


class BlobVec(list):
    """pycaffe's ``self.blobs``: the layer's learnable blobs, added in ``setup``."""

    def __init__(self, owner: str = ""):
        super().__init__()
        self.owner = owner

    def add_blob(self, *shape) -> Blob:
        """A new learnable blob of ``shape``, zeros until ``setup`` writes its initial values."""
        shape = _as_shape(shape)
        blob = Blob(np.zeros(shape, np.float32), np.zeros(shape, np.float32), self.owner)
        self.append(blob)
        return blob


class StepBlobs:
    """One step's blobs, made once when a Net binds the step; ``bind`` points them at the step's
    arrays before a call and ``finish`` uploads what the call wrote (a GPU's host copies).

    ``gpu`` is the device backend when the arrays live on a GPU and the layer wants host arrays;
    ``zeros`` makes a spare gradient for a bottom that takes none (made once, on first use)."""

    def __init__(self, owner: str, bottom_shapes: list[Shape], top_shapes: list[Shape],
                 params: list[Blob], host_copies: bool, zeros: Callable[[Shape, Any], Any]):
        self.bottom = [Blob(shape_only(s), shape_only(s), owner, True) for s in bottom_shapes]
        self.top = [Blob(shape_only(s), shape_only(s), owner, True) for s in top_shapes]
        self.params = params
        self.host_copies = host_copies
        self.zeros = zeros
        self.spare: dict[int, Any] = {}
        # host copies on a GPU, made once: tops, and every gradient a call may write
        self.top_host = [np.zeros(s, np.float32) for s in top_shapes] if host_copies else []
        self.bottom_diff_host = [np.zeros(s, np.float32) for s in bottom_shapes] if host_copies else []
        self.param_diff_host = [np.zeros(b.shape, np.float32) for b in params] if host_copies else []

    def _spare(self, i: int, like):
        if i not in self.spare:
            self.spare[i] = self.zeros(like.shape, like.dtype)
        return self.spare[i]

    def bind(self, io, gpu, backward: bool) -> list[bool]:
        """Point every blob at ``io``'s arrays (host copies where needed); returns Caffe's
        ``propagate_down``.  Before a backward the gradients a call writes are zeroed, so a
        layer may add into them as Caffe's accumulate."""
        get = gpu.download if self.host_copies else _same
        propagate = [d is not None for d in io.bottom_diff]
        for i, (blob, x, dx) in enumerate(zip(self.bottom, io.bottom, io.bottom_diff)):
            blob.data = get(x)
            blob.diff = (self.bottom_diff_host[i] if self.host_copies else dx) if dx is not None \
                else self._spare(i, x)
        for i, (blob, y, dy) in enumerate(zip(self.top, io.top, io.top_diff)):
            blob.data = get(y) if backward or not self.host_copies else self.top_host[i]
            blob.diff = get(dy) if backward and dy is not None else blob.diff
        for i, (blob, w, dw) in enumerate(zip(self.params, io.params, io.param_diff)):
            blob.data = get(w)
            blob.diff = (self.param_diff_host[i] if self.host_copies else dw) if dw is not None \
                else self._spare(len(self.bottom) + i, w)
        if backward:
            for blob in self.bottom + self.params:
                _clear(blob.diff, gpu)
        return propagate

    def finish(self, io, gpu, backward: bool) -> None:
        """Upload what the call wrote to the device (host copies only)."""
        if not self.host_copies:
            return
        if not backward:
            for y, host in zip(io.top, self.top_host):
                gpu.upload(y, host)
            for w, blob in zip(io.params, self.params):  # state a layer keeps in its blobs
                gpu.upload(w, blob.data)
            return
        pairs = list(zip(io.bottom_diff, self.bottom_diff_host)) + \
            list(zip(io.param_diff, self.param_diff_host))
        for dx, host in pairs:
            if dx is not None:
                gpu.upload(dx, host)


def _same(array):
    return array


def _clear(array, gpu: Optional[Any]) -> None:
    if isinstance(array, np.ndarray):
        array.fill(0)
    else:
        gpu.fill(array, 0)
