"""Devices: where arrays live and what computes on them.

The CPU (NumPy) is the reference and always present.  A GPU device wraps a *backend*: the
one object that talks to CUDA (kernels, cuBLAS, streams, graphs, pinned memory; see
``runtime/cuda.py``).  Layers reach it as ``io.gpu`` in their ``forward_gpu``/``backward_gpu``
and never import CuPy themselves, so ``import trainnet`` needs no CuPy and the GPU code can be
exercised against any object with the backend's interface.

``get_device`` resolves the CLI's ``--device``: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (the
GPU when one is usable, else the CPU).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from trainnet.errors import TrainnetError


class Device:
    """The CPU: NumPy arrays, every operation immediate."""

    kind = "cpu"
    is_gpu = False
    xp = np
    backend: Any = None

    def zeros(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)

    def upload(self, dst, host) -> None:
        """Copy the host array ``host`` into the device array ``dst`` (same shape)."""
        np.copyto(dst, host)

    def to_host(self, array) -> np.ndarray:
        """A host copy of ``array``."""
        return np.array(array)

    def fill(self, array, value) -> None:
        array.fill(value)

    def add(self, dst, src) -> None:
        """``dst += src`` for two float32 arrays of one size."""
        dst += src

    def copy(self, dst, src) -> None:
        np.copyto(dst, src)

    def synchronize(self) -> None:
        pass

    def __str__(self) -> str:
        return "cpu"


class GpuDevice(Device):
    """An NVIDIA GPU through a backend; ``name`` is how the user selected it (``cuda:0``)."""

    kind = "cuda"
    is_gpu = True

    def __init__(self, backend, name: str = "cuda:0"):
        self.backend = backend
        self.xp = backend.xp
        self.name = name

    def zeros(self, shape, dtype=np.float32):
        return self.backend.zeros(shape, dtype)

    def upload(self, dst, host) -> None:
        self.backend.upload(dst, np.ascontiguousarray(host, dtype=dst.dtype))

    def to_host(self, array) -> np.ndarray:
        return self.backend.download(array)

    def fill(self, array, value) -> None:
        self.backend.fill(array, value)

    def add(self, dst, src) -> None:
        self.backend.axpy(dst, src, 1.0)

    def copy(self, dst, src) -> None:
        self.backend.copy(dst, src)

    def synchronize(self) -> None:
        self.backend.synchronize()

    def __str__(self) -> str:
        return f"{self.name} ({self.backend.describe()})"


CPU = Device()
_gpus: dict[tuple[int, bool], GpuDevice] = {}


def gpu_count() -> int:
    """How many CUDA GPUs CuPy sees (0 without CuPy, a driver or a GPU)."""
    try:
        import cupy
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no CuPy, no driver, no GPU: all mean "none here"
        return 0


def get_device(spec: str = "cpu", *, tf32: bool = False) -> Device:
    """``cpu``, ``auto``, ``cuda`` or ``cuda:N``.  ``tf32`` lets cuBLAS use TF32 for GEMMs."""
    spec = spec.strip().lower()
    if spec == "cpu":
        return CPU
    if spec == "auto":
        return get_device("cuda", tf32=tf32) if gpu_count() else CPU
    if spec != "cuda" and not spec.startswith("cuda:"):
        raise TrainnetError(f"unknown device '{spec}': use cpu, auto, cuda or cuda:N")
    index_text = spec.partition(":")[2] or "0"
    if not index_text.isdigit():
        raise TrainnetError(f"device '{spec}': the GPU index must be a number, as in cuda:0")
    index = int(index_text)
    try:
        importlib.import_module("cupy")
    except ImportError:
        raise TrainnetError(f"device '{spec}': CuPy is not installed; install trainnet with the "
                            "extra matching your CUDA (pip install -e '.[cuda12]' or '.[cuda13]')"
                            ) from None
    count = gpu_count()
    if count == 0:
        raise TrainnetError(f"device '{spec}': CuPy finds no CUDA GPU here (no driver or no "
                            "device); use --device cpu")
    if index >= count:
        raise TrainnetError(f"device '{spec}': there {'is' if count == 1 else 'are'} {count} GPU"
                            f"{'' if count == 1 else 's'} here (cuda:0 to cuda:{count - 1})")
    key = (index, tf32)
    if key not in _gpus:
        from trainnet.runtime.cuda import CudaBackend
        _gpus[key] = GpuDevice(CudaBackend(index, tf32=tf32), f"cuda:{index}")
    return _gpus[key]
