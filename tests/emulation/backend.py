"""An emulated CUDA backend: trainnet's GPU code path, run on the CPU.

It has ``runtime/cuda.py``'s interface.  Each ``.cu`` source is compiled as host C++ with
``cuda_host.h`` and called through ctypes on NumPy arrays; cuBLAS calls become float32 NumPy
matrix products; ``capture`` records launches instead of running them, and a replay runs the
record, as a CUDA graph would (so host work done while capturing is not repeated).

A launch runs every block with blockDim.x threads, each a fiber, ``__syncthreads()`` a
barrier and ``__shared__`` memory shared by the block's threads (see ``cuda_host.h``).  To keep
the tests quick, blocks are capped at ``THREADS`` (32) threads and grid-stride launches at
``max_blocks`` (4) blocks: every block reduction runs with more than one thread, and a
grid-stride loop over more than 32 items with more than one block.  A source declaring
``__shared__`` memory is built with GCC's ThreadSanitizer instrumentation feeding our own
checker, so a shared-memory race, a read of shared memory no thread wrote, or a divergent
barrier raises ``EmulationError`` naming the kernel and the source lines.

This runs every layer's ``forward_gpu``/``backward_gpu``, the solver's update kernels and the
graph logic in CI, where there is no GPU.  It cannot show timing, warp-level behaviour (there is
none to emulate: no kernel uses warp intrinsics), or anything of CuPy's own behaviour;
``pytest -m gpu`` on a real GPU covers those.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from trainnet.kernels import sources as K
from trainnet.runtime.cuda import BASIC, check_upload

from .build import EmulationError, build, explain

__all__ = ["EmulatedBackend", "EmulationError", "THREADS", "compiler"]

HERE = Path(__file__).resolve().parent
CACHE = Path(tempfile.gettempdir()) / f"trainnet-emulated-{os.getuid()}"
CTYPES = {np.int32: ctypes.c_int32, np.uint32: ctypes.c_uint32, np.int64: ctypes.c_int64,
          np.uint64: ctypes.c_uint64, np.float32: ctypes.c_float}


THREADS = int(os.environ.get("TRAINNET_EMULATED_THREADS", "32"))  # a power of two, at most 1024
_LOCK = threading.Lock()  # a library's shared memory and fibers serve one launch at a time


def compiler() -> str | None:
    """A GCC C++ compiler ($CXX when it is one): the shared-memory race checker uses GCC's
    ThreadSanitizer hooks (clang's emit others), so without GCC the emulated tests skip."""
    for name in dict.fromkeys((os.environ.get("CXX", "g++"), "g++", "c++")):
        path = shutil.which(name)
        if path and _is_gcc(path):
            return path
    return None


@functools.cache
def _is_gcc(path: str) -> bool:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Free Software Foundation" in out and "clang" not in out.lower()


class EmulatedGraph:
    def __init__(self, ops):
        self.ops = ops

    def replay(self) -> None:
        for op in self.ops:
            op()


class EmulatedBackend:
    xp = np
    name, arch, tf32, max_blocks = "emulated", "host", False, 4

    def __init__(self):
        self._libs: dict[Path, ctypes.CDLL] = {}
        self._paths: dict[str, Path] = {}
        self._checked: set = set()   # kernel ABI checks done (trainnet.kernels.sources.check_launch)
        self.recording: list | None = None
        self.capturing = False
        self.launches = 0

    def describe(self) -> str:
        return "emulated on the CPU"

    def _run(self, op) -> None:
        if self.recording is not None:
            self.recording.append(op)
        else:
            op()

    # --- memory -----------------------------------------------------------------------------
    def zeros(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)

    def pinned(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def upload(self, dst, host):
        self._no_capture("upload")
        check_upload(dst, host)  # the real backend's contract: same type and count, both dense
        np.copyto(dst, host.reshape(dst.shape))

    def download(self, src):
        self._no_capture("download")
        return np.array(src)

    def upload_side(self, dst, host, after=None):
        check_upload(dst, host)
        np.copyto(dst, host.reshape(dst.shape))
        return None

    def record(self):
        return None

    def wait(self, event):
        pass

    def host_wait(self, event):
        pass

    def copy(self, dst, src):
        self._run(lambda: np.copyto(dst.reshape(-1), src.reshape(-1)))

    def fill(self, array, value):
        if array.dtype == np.float32:
            self.launch(BASIC, "fill_f32", array.size, array, np.float32(value), np.int64(array.size))
        else:
            assert value == 0
            self._run(lambda: array.fill(0))

    def axpy(self, y, x, alpha):
        self.launch(BASIC, "axpy_f32", y.size, y, x, np.float32(alpha), np.int64(y.size))

    def synchronize(self):
        self._no_capture("synchronize")

    # --- kernels ----------------------------------------------------------------------------
    def module(self, source: Path) -> ctypes.CDLL:
        lib = self._libs.get(source)
        if lib is None:
            text = K.read_source(source).encode() + (HERE / "cuda_host.h").read_bytes()
            digest = hashlib.sha256(text + (HERE / "build.py").read_bytes()).hexdigest()[:16]
            CACHE.mkdir(exist_ok=True)
            so = CACHE / f"{Path(source).stem}-{digest}.so"
            if not so.exists():
                build(compiler(), Path(source), so, HERE / "cuda_host.h")
            lib = self._libs[source] = ctypes.CDLL(str(so))
            lib.emu_error.restype = ctypes.c_char_p
            lib.emu_shared_base.restype = ctypes.c_long
            self._paths[lib._name] = so
        return lib

    def launch(self, source, name, n, *args):
        blocks = max(1, min((int(n) + THREADS - 1) // THREADS, self.max_blocks))
        self.launch_blocks(source, name, blocks, THREADS, *args)

    def launch_blocks(self, source, name, blocks, threads, *args):
        """``blocks`` blocks of ``threads`` threads, at most ``THREADS`` of them."""
        K.check_launch(source, name, threads, args, lambda a: isinstance(a, np.ndarray), self._checked)
        lib = self.module(source)
        fn = getattr(lib, name)
        fn.restype = None
        blocks, threads = int(blocks), min(int(threads), THREADS)
        cargs = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else CTYPES[type(a)](a)
                 for a in args]

        def op(arrays=args):  # the default keeps the arrays alive while a graph holds the launch
            self.launches += 1
            with _LOCK:
                lib.emu_configure(ctypes.c_uint(blocks), ctypes.c_uint(threads))
                fn(*cargs)
                error = lib.emu_error()
            if error is not None:
                raise EmulationError(explain(self._paths[lib._name], lib.emu_shared_base(), name,
                                             blocks, threads, error.decode()))
        self._run(op)

    # --- cuBLAS -----------------------------------------------------------------------------
    def gemm(self, a, b, c, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
        def op():
            prod = np.matmul(a.T if trans_a else a, b.T if trans_b else b, dtype=np.float32)
            c[...] = np.float32(alpha) * prod + (np.float32(beta) * c if beta else 0)
        self._run(op)

    def gemm_batched(self, a, b, c, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
        def op():
            opa = np.swapaxes(a, -1, -2) if trans_a else a
            opb = np.swapaxes(b, -1, -2) if trans_b else b
            prod = np.matmul(opa, opb, dtype=np.float32)
            c[...] = np.float32(alpha) * prod + (np.float32(beta) * c if beta else 0)
        self._run(op)

    # --- graphs -----------------------------------------------------------------------------
    def capture(self, fn):
        self.recording, self.capturing = [], True
        try:
            fn()
            return EmulatedGraph(self.recording)
        finally:
            self.recording, self.capturing = None, False

    def _no_capture(self, what):
        if self.capturing:
            raise RuntimeError(f"{what} while capturing a CUDA graph (it would synchronize)")

