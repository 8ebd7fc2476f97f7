"""pycaffe's Blob: a blob of a Net as views of the Net's own memory.

``data`` and ``diff`` are the arrays the Net computes in (NumPy on the CPU, CuPy on a GPU, no
copy either way); writing into them is writing into the net.  ``numpy()`` copies to the host.
A Net re-planned for new shapes (``reshape``) points the same Blob objects at its new memory;
arrays taken before stay valid and keep the old values.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np


class Blob:
    def __init__(self, name: str, data: Any, diff: Any = None,
                 on_reshape: Optional[Callable[[str, tuple], None]] = None):
        self.name = name
        self._on_reshape = on_reshape
        self._bind(data, diff)

    def _bind(self, data: Any, diff: Any) -> None:
        self._data = data
        # a blob no backward reaches has no gradient memory in the plan: zeros, as Caffe's
        self._diff = diff if diff is not None else np.zeros(data.shape, data.dtype) if \
            isinstance(data, np.ndarray) else _zeros_like(data)

    @property
    def data(self):
        return self._data

    @property
    def diff(self):
        return self._diff

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._data.shape)

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def _legacy(self, axis: int) -> int:
        shape = self.shape
        if len(shape) > 4:
            raise ValueError(f"blob '{self.name}' has {len(shape)} axes: num/channels/height/"
                             "width need at most 4 (use .shape)")
        return shape[axis] if axis < len(shape) else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def reshape(self, *shape: int) -> None:
        """A new shape for an input blob; the Net re-plans at its next ``reshape()`` or
        ``forward``, keeping its parameters."""
        if self._on_reshape is None:
            raise ValueError(f"blob '{self.name}' cannot be reshaped: only a net's input blobs "
                             "(the tops of its Input layers) can")
        self._on_reshape(self.name, tuple(int(d) for d in shape))

    def numpy(self, diff: bool = False) -> np.ndarray:
        """A host copy of the value (or the gradient)."""
        array = self._diff if diff else self._data
        return array.get() if hasattr(array, "get") else np.array(array)

    def __array__(self, dtype=None, copy=None):
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"Blob({self.name!r}, shape={self.shape})"


def _zeros_like(array):
    import cupy
    return cupy.zeros(array.shape, array.dtype)
