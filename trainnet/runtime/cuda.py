"""The CUDA backend: the only module that talks to CuPy.

It owns, for one GPU: the compute stream every kernel, GEMM and copy goes to in plan order;
a side stream for input uploads; a cuBLAS handle bound to the compute stream (TF32 only when
asked); the project's ``.cu`` sources, compiled lazily with NVRTC for this GPU's architecture
and cached for the process (CuPy also keeps compiled kernels on disk); and graph capture.

Everything a layer or the solver runs between ``capture`` and its end goes into the graph,
so no method here may allocate, synchronize or read device memory back while capturing.

Every piece of work names its stream: kernels launch with ``stream=``, copies and fills take
the stream's handle, and cuBLAS is called directly (``Cublas``, through ctypes) on a handle
bound once to the compute stream.  Nothing relies on CuPy's *current* stream, which is per
thread and which a second backend in the process (``--tf32`` after a plain one, ``cuda:1``)
would change: work there would race this backend's copies and escape its graph captures.
CuPy's own cuBLAS wrappers are not used: they reset the handle's stream to the current one
before every call (which also resets cuBLAS's workspace) and, from CuPy 13, refuse any call
while a stream is capturing.  The handle owns a fixed workspace (``CUBLAS_WORKSPACE``), so a
capture never allocates one, whatever the cuBLAS version (before 12.2 each capture did).

Kernels compile with ``--fmad=false``: NVRTC would otherwise contract ``a * b + c`` into one
FMA (one rounding instead of two) and the kernels that promise the CPU pass's float32 order
(pooling's sums, the update rules, split and tile gradients) would differ from NumPy in the
last bit.  CuPy appends ``-ftz=true`` to every compile, so subnormal values (below 1.2e-38)
still flush to zero on the GPU; equality with the CPU holds for normal numbers only, and
transcendental functions (expf, logf, tanhf) differ from the C library's by a few ulp.
"""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path
from typing import Callable

import numpy as np

from trainnet.kernels import sources as K

BASIC = K.kernel_source(__file__, "basic.cu")
OP_N, OP_T = 0, 1
MATH_DEFAULT, MATH_TF32 = 0, 3  # cublasMath_t: CUBLAS_DEFAULT_MATH, CUBLAS_TF32_TENSOR_OP_MATH
H2D, D2H, D2D = 1, 2, 3        # cudaMemcpyKind
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")
CUBLAS_WORKSPACE = 32 << 20    # bytes; what cuBLAS's documentation asks for on Hopper (4 MiB before)


class Cublas:
    """cuBLAS's C API on one handle: bound to one stream at creation, with a workspace of its
    own, never re-bound (``cublasSetStream`` would also drop the workspace)."""

    def __init__(self, lib, stream_ptr: int, workspace_ptr: int, workspace_bytes: int,
                 math_mode: int):
        self.lib = lib
        handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self.handle = handle
        version = ctypes.c_int()
        self._check(lib.cublasGetVersion_v2(handle, ctypes.byref(version)), "cublasGetVersion")
        self.version = version.value
        self._check(lib.cublasSetStream_v2(handle, ctypes.c_void_p(stream_ptr)), "cublasSetStream")
        self._check(lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(workspace_ptr),
                                              ctypes.c_size_t(workspace_bytes)), "cublasSetWorkspace")
        self._check(lib.cublasSetMathMode(handle, ctypes.c_int(math_mode)), "cublasSetMathMode")
        # alpha and beta are read from host memory
        self._check(lib.cublasSetPointerMode_v2(handle, ctypes.c_int(0)), "cublasSetPointerMode")

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed: cublasStatus_t {status}")

    def sgemm(self, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
        i, p = ctypes.c_int, ctypes.c_void_p
        self._check(self.lib.cublasSgemm_v2(self.handle, i(ta), i(tb), i(m), i(n), i(k), p(alpha),
                                            p(a), i(lda), p(b), i(ldb), p(beta), p(c), i(ldc)),
                    "cublasSgemm")

    def sgemm_strided_batched(self, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                              sc, batch) -> None:
        i, q, p = ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p
        self._check(self.lib.cublasSgemmStridedBatched(
            self.handle, i(ta), i(tb), i(m), i(n), i(k), p(alpha), p(a), i(lda), q(sa), p(b),
            i(ldb), q(sb), p(beta), p(c), i(ldc), q(sc), i(batch)), "cublasSgemmStridedBatched")


def load_cublas(cupy):
    """The cuBLAS library CuPy loaded (its binding module links it), opened by ctypes."""
    importlib.import_module("cupy_backends.cuda.libs.cublas")  # links libcublas into the process
    major = int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    names = [f"libcublas.so.{major}", f"cublas64_{major}.dll", "libcublas.so"]
    try:  # the path of the copy already mapped (a wheel's, outside the loader's search path)
        with open("/proc/self/maps") as maps:
            names[:0] = sorted({line.split()[-1] for line in maps if "libcublas.so" in line
                                and "libcublasLt" not in line and line.split()[-1].startswith("/")})
    except OSError:
        pass
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise RuntimeError(f"cuBLAS: none of {', '.join(names)} could be loaded")


class CudaGraph:
    def __init__(self, graph, stream):
        self.graph, self.stream = graph, stream

    def replay(self) -> None:
        self.graph.launch(self.stream)


class CudaBackend:
    def __init__(self, index: int = 0, *, tf32: bool = False):
        import cupy

        self.cp, self.xp = cupy, cupy
        self.index, self.tf32 = index, tf32
        self.device = cupy.cuda.Device(index)
        self.device.use()
        props = cupy.cuda.runtime.getDeviceProperties(index)
        self.name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        self.arch = f"sm_{props['major']}{props['minor']}"
        self.max_blocks = int(props["multiProcessorCount"]) * 32
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.side = cupy.cuda.Stream(non_blocking=True)
        with self.device:  # the handle belongs to the device current at its creation
            self._workspace = cupy.empty(CUBLAS_WORKSPACE, np.uint8)
            self.blas = Cublas(load_cublas(cupy), self.stream.ptr, self._workspace.data.ptr,
                               CUBLAS_WORKSPACE, MATH_TF32 if tf32 else MATH_DEFAULT)
        self._scalars: dict[float, np.ndarray] = {}  # host alpha/beta, kept alive for graphs
        self._modules: dict[Path, object] = {}
        self._checked: set = set()  # kernel argument typings checked against their prototype
        self.capturing = False

    def describe(self) -> str:
        return f"{self.name}, {self.arch}{', TF32 GEMMs' if self.tf32 else ''}"

    # --- memory -----------------------------------------------------------------------------
    def zeros(self, shape, dtype=np.float32):
        """A device array, zeroed on the compute stream (later work there sees the zeros)."""
        with self.device:
            array = self.cp.empty(shape, dtype=dtype)
        if array.nbytes:
            self.cp.cuda.runtime.memsetAsync(array.data.ptr, 0, array.nbytes, self.stream.ptr)
        return array

    def pinned(self, shape, dtype) -> np.ndarray:
        """A host array in page-locked memory (uploads from it run asynchronously)."""
        count = int(np.prod(shape))
        mem = self.cp.cuda.alloc_pinned_memory(max(1, count * np.dtype(dtype).itemsize))
        return np.frombuffer(mem, dtype, count).reshape(shape)

    def upload(self, dst, host: np.ndarray) -> None:
        self._no_capture("upload")
        check_upload(dst, host)
        self._memcpy(dst.data.ptr, host.ctypes.data, host.nbytes, H2D, self.stream)

    def download(self, src) -> np.ndarray:
        self._no_capture("download")
        assert src.flags.c_contiguous, "download: the device array is not C-contiguous"
        out = np.empty(src.shape, src.dtype)
        self._memcpy(out.ctypes.data, src.data.ptr, out.nbytes, D2H, self.stream)
        self.stream.synchronize()
        return out

    def upload_side(self, dst, host: np.ndarray, after=None):
        """Copy pinned ``host`` into ``dst`` on the side stream once ``after`` (an event of the
        compute stream) has passed; returns the event that marks the copy done."""
        check_upload(dst, host)
        with self.device:  # events belong to the device current when they are made
            if after is not None:
                self.side.wait_event(after)
            self._memcpy(dst.data.ptr, host.ctypes.data, host.nbytes, H2D, self.side)
            return self.side.record()

    def record(self):
        """An event on the compute stream at this point."""
        with self.device:
            return self.stream.record()

    def wait(self, event) -> None:
        """Later compute-stream work waits for ``event`` (the host does not)."""
        self.stream.wait_event(event)

    def host_wait(self, event) -> None:
        """The host waits until ``event`` has passed (before reusing a pinned buffer)."""
        if event is not None:
            event.synchronize()

    def copy(self, dst, src) -> None:
        assert dst.nbytes == src.nbytes and dst.flags.c_contiguous and src.flags.c_contiguous
        self._memcpy(dst.data.ptr, src.data.ptr, dst.nbytes, D2D, self.stream)

    def _memcpy(self, dst_ptr, src_ptr, nbytes, kind, stream) -> None:
        if nbytes:
            with self.device:
                self.cp.cuda.runtime.memcpyAsync(dst_ptr, src_ptr, nbytes, kind, stream.ptr)

    def fill(self, array, value) -> None:
        if array.dtype == np.float32:
            self.launch(BASIC, "fill_f32", array.size, array, np.float32(value), np.int64(array.size))
        elif value == 0:
            with self.device:
                self.cp.cuda.runtime.memsetAsync(array.data.ptr, 0, array.nbytes, self.stream.ptr)
        else:
            raise TypeError(f"fill: {array.dtype} arrays are filled with 0 only")

    def axpy(self, y, x, alpha: float) -> None:
        self.launch(BASIC, "axpy_f32", y.size, y, x, np.float32(alpha), np.int64(y.size))

    def synchronize(self) -> None:
        self._no_capture("synchronize")
        self.stream.synchronize()

    # --- kernels ----------------------------------------------------------------------------
    def module(self, source: Path):
        mod = self._modules.get(source)
        if mod is None:
            with self.device:
                mod = self.cp.RawModule(code=K.read_source(source), options=NVRTC_OPTIONS)
            self._modules[source] = mod
        return mod

    def launch(self, source: Path, name: str, n: int, *args) -> None:
        """A grid-stride kernel over ``n`` items."""
        self.launch_blocks(source, name, K.grid_for(n, self.max_blocks), K.BLOCK, *args)

    def launch_blocks(self, source: Path, name: str, blocks: int, threads: int, *args) -> None:
        """``blocks`` blocks of ``threads`` threads (one block per row, say)."""
        K.check_launch(source, name, threads, args, lambda a: isinstance(a, self.cp.ndarray),
                       self._checked)
        if blocks > 0:
            with self.device:  # CuPy loads a module on the current device at its first use
                kernel = self.module(source).get_function(name)
                kernel((int(blocks),), (int(threads),), args, stream=self.stream)

    # --- cuBLAS -----------------------------------------------------------------------------
    def _scalar(self, value: float) -> int:
        host = self._scalars.get(value)
        if host is None:
            host = self._scalars[value] = np.array([value], np.float32)
        return host.ctypes.data

    def gemm(self, a, b, c, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0) -> None:
        """Row-major ``c = alpha op(a) op(b) + beta c`` for 2-D arrays with unit inner stride."""
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        # Row-major C is column-major C^T = op(B)^T op(A)^T: swap the operands.
        with self.device:
            self.blas.sgemm(OP_T if trans_b else OP_N, OP_T if trans_a else OP_N,
                            n, m, k, self._scalar(alpha), b.data.ptr, _ld(b), a.data.ptr, _ld(a),
                            self._scalar(beta), c.data.ptr, _ld(c))

    def gemm_batched(self, a, b, c, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0) -> None:
        """``c[i] = alpha op(a[i]) op(b[i]) + beta c[i]``; a 2-D ``a`` or ``b`` is shared."""
        batch, m, n = c.shape
        k = a.shape[-2] if trans_a else a.shape[-1]
        stride = lambda x: 0 if x.ndim == 2 else x.strides[0] // x.itemsize  # noqa: E731
        with self.device:
            self.blas.sgemm_strided_batched(
                OP_T if trans_b else OP_N, OP_T if trans_a else OP_N, n, m, k,
                self._scalar(alpha), b.data.ptr, _ld(b), stride(b), a.data.ptr, _ld(a), stride(a),
                self._scalar(beta), c.data.ptr, _ld(c), stride(c), batch)

    # --- graphs -----------------------------------------------------------------------------
    def capture(self, fn: Callable[[], None]) -> CudaGraph:
        """Record what ``fn`` queues on the compute stream as a graph (nothing runs now)."""
        with self.device:
            self.stream.begin_capture()
            self.capturing = True
            try:
                fn()
            finally:
                self.capturing = False
                graph = self.stream.end_capture()
        return CudaGraph(graph, self.stream)

    def _no_capture(self, what: str) -> None:
        if self.capturing:
            raise RuntimeError(f"{what} while capturing a CUDA graph (it would synchronize)")


def check_upload(dst, host: np.ndarray) -> None:
    """A host -> device copy fills ``dst`` exactly: same element type and count, both dense."""
    if (host.dtype != dst.dtype or host.size != dst.size or not host.flags.c_contiguous
            or not dst.flags.c_contiguous):
        raise ValueError(f"upload: a host array of {host.shape} {host.dtype} does not fit the "
                         f"device array of {tuple(dst.shape)} {dst.dtype} (same type and element "
                         "count, both C-contiguous)")


def _ld(x) -> int:
    """Leading dimension of a row-major matrix (or a batch of them): its row stride."""
    assert x.strides[-1] == x.itemsize, "GEMM operands need unit stride along rows"
    return x.strides[-2] // x.itemsize
