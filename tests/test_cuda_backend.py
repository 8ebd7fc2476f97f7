"""runtime/cuda.py against a fake CuPy and a fake cuBLAS that record which stream each piece of
work went to (no GPU here): every kernel, GEMM, copy and fill names the backend's own stream,
whatever CuPy's current stream is, with two backends in the process; cuBLAS's handle is bound
once and owns its workspace; uploads are checked; the staging buffers' zero-fill comes before
their first upload.  Copies and fills really move host bytes, so their effects are visible."""

import ctypes
import itertools
import sys
import types

import numpy as np
import pytest

from trainnet.runtime import cuda

_ids = itertools.count(1000)


class FakeArray(np.ndarray):
    """A host array posing as a device one (``.data.ptr`` is its address)."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


class FakeCupy(types.ModuleType):
    def __init__(self):
        super().__init__("cupy")
        self.log = []           # (what, stream handle, detail)
        self.current = None     # CuPy's current stream (per thread in CuPy; one here)
        self.ndarray = FakeArray
        fake = self

        class Stream:
            def __init__(self, non_blocking=False):
                self.ptr = next(_ids)
                self.capturing = False

            def record(self):
                event = ("event", self.ptr, next(_ids))
                fake.log.append(("record", self.ptr, event))
                return event

            def wait_event(self, event):
                fake.log.append(("wait", self.ptr, event))

            def synchronize(self):
                fake.log.append(("synchronize", self.ptr, None))

            def use(self):
                fake.current = self

            def __enter__(self):
                self._prev, fake.current = fake.current, self
                return self

            def __exit__(self, *exc):
                fake.current = self._prev

            def begin_capture(self):
                self.capturing = True

            def end_capture(self):
                self.capturing = False
                return types.SimpleNamespace(launch=lambda stream: None)

        class Device:
            def __init__(self, index=0):
                self.id = index

            def use(self):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

        def memcpy(dst, src, nbytes, kind, stream):
            ctypes.memmove(dst, src, nbytes)
            fake.log.append(("memcpy", stream, nbytes))

        def memset(ptr, value, nbytes, stream):
            ctypes.memset(ptr, value, nbytes)
            fake.log.append(("memset", stream, nbytes))

        class RawModule:
            def __init__(self, code, options=()):
                self.options = options
                fake.log.append(("compile", None, options))

            def get_function(self, name):
                def kernel(grid, block, args, stream=None, shared_mem=0):
                    used = stream if stream is not None else fake.current
                    fake.log.append(("kernel", used.ptr if used else 0, name))
                return kernel

        runtime = types.SimpleNamespace(
            getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": 9, "minor": 0,
                                           "multiProcessorCount": 2},
            memcpyAsync=memcpy, memsetAsync=memset, runtimeGetVersion=lambda: 12040)
        self.cuda = types.SimpleNamespace(Device=Device, Stream=Stream, runtime=runtime,
                                          alloc_pinned_memory=lambda n: bytearray(n))
        self.RawModule = RawModule

    def empty(self, shape, dtype=np.float32):
        array = np.empty(shape, dtype).view(FakeArray)
        array.view(np.uint8)[...] = 0xAB  # garbage, as fresh device memory may hold
        return array

    def ops(self, what):
        return [entry for entry in self.log if entry[0] == what]


class FakeCublasLib:
    """cuBLAS's C entry points, recording the stream each handle is bound to."""

    def __init__(self, log):
        self.log, self.stream, self.workspace = log, None, None

    def cublasCreate_v2(self, ref):
        ref._obj.value = 77
        return 0

    def cublasGetVersion_v2(self, handle, ref):
        ref._obj.value = 120400
        return 0

    def cublasSetStream_v2(self, handle, stream):
        self.stream, self.workspace = stream.value, None  # as cuBLAS: the workspace resets
        self.log.append(("blas_stream", stream.value, None))
        return 0

    def cublasSetWorkspace_v2(self, handle, ptr, size):
        self.workspace = (ptr.value, size.value)
        return 0

    def cublasSetMathMode(self, handle, mode):
        self.log.append(("blas_math", None, mode.value))
        return 0

    def cublasSetPointerMode_v2(self, handle, mode):
        return 0

    def cublasSgemm_v2(self, handle, *args):
        assert self.workspace is not None
        self.log.append(("gemm", self.stream, len(args)))
        return 0

    def cublasSgemmStridedBatched(self, handle, *args):
        assert self.workspace is not None
        self.log.append(("gemm", self.stream, len(args)))
        return 0


@pytest.fixture
def cp(monkeypatch):
    fake = FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    libs = []

    def load(cupy):
        libs.append(FakeCublasLib(fake.log))
        return libs[-1]
    monkeypatch.setattr(cuda, "load_cublas", load)
    fake.libs = libs
    return fake


def _work(gpu, cp):
    """A bit of everything a training iteration queues."""
    a, b, c = (gpu.zeros((4, 4)) for _ in range(3))
    gpu.upload(a, np.arange(16, dtype=np.float32).reshape(4, 4))
    gpu.fill(b, 1.0)
    gpu.axpy(b, a, 2.0)
    gpu.copy(c, a)
    gpu.gemm(a, b, c)
    gpu.gemm_batched(a.reshape(1, 4, 4), b.reshape(1, 4, 4), c.reshape(1, 4, 4))
    return a, b, c


def test_two_backends_each_queue_every_piece_of_work_on_their_own_stream(cp):
    first = cuda.CudaBackend(0)
    second = cuda.CudaBackend(0, tf32=True)  # made later, as --tf32 after a plain device
    other = cp.cuda.Stream()
    for gpu in (first, second, first):
        with other:  # CuPy's current stream is neither backend's
            cp.log.clear()
            _work(gpu, cp)
        streams = {(what, s) for what, s, _ in cp.log if what in ("kernel", "gemm", "memcpy",
                                                                  "memset")}
        assert {s for _, s in streams} == {gpu.stream.ptr}, streams
        assert {w for w, _ in streams} == {"kernel", "gemm", "memcpy", "memset"}


def test_cublas_is_bound_once_to_the_compute_stream_with_its_own_workspace(cp):
    gpu = cuda.CudaBackend(0, tf32=True)
    lib = cp.libs[-1]
    assert lib.stream == gpu.stream.ptr and gpu.blas.version == 120400
    assert lib.workspace == (gpu._workspace.data.ptr, cuda.CUBLAS_WORKSPACE)
    assert ("blas_math", None, cuda.MATH_TF32) in cp.log
    cp.log.clear()
    graph = gpu.capture(lambda: _work_in_capture(gpu))
    graph.replay()
    assert cp.ops("blas_stream") == []  # never re-bound (that would drop the workspace)
    assert {s for _, s, _ in cp.ops("gemm")} == {gpu.stream.ptr}


def _work_in_capture(gpu):
    a = gpu.zeros((2, 2))
    gpu.gemm(a, a, a)
    gpu.launch(cuda.BASIC, "fill_f32", 4, a, np.float32(0), np.int64(4))


def test_work_from_another_thread_goes_to_the_backend_stream(cp):
    import threading
    gpu = cuda.CudaBackend(0)
    cp.log.clear()
    thread = threading.Thread(target=_work, args=(gpu, cp))
    thread.start()
    thread.join()
    assert {s for what, s, _ in cp.log if what in ("kernel", "gemm", "memcpy")} == {gpu.stream.ptr}


def test_zeros_are_zeroed_on_the_compute_stream(cp):
    gpu = cuda.CudaBackend(0)
    cp.log.clear()
    z = gpu.zeros((3, 5), np.int32)
    assert not z.any() and cp.ops("memset") == [("memset", gpu.stream.ptr, 60)]


@pytest.mark.parametrize("host, message", [
    (np.zeros(5, np.float32), r"host array of \(5,\) float32 does not fit the device array of "
                              r"\(4,\) float32"),
    (np.zeros(4, np.float64), "float64 does not fit"),
    (np.zeros(8, np.float32)[::2], "C-contiguous"),
])
def test_upload_refuses_a_host_array_that_does_not_fit(cp, host, message):
    gpu = cuda.CudaBackend(0)
    dst = gpu.zeros(4)
    cp.log.clear()
    with pytest.raises(ValueError, match=message):
        gpu.upload(dst, host)
    with pytest.raises(ValueError, match=message):
        gpu.upload_side(dst, host)
    assert cp.ops("memcpy") == []


def test_an_upload_of_the_same_count_in_another_shape_is_a_copy(cp):
    gpu = cuda.CudaBackend(0)
    dst = gpu.zeros((2, 3))
    gpu.upload(dst, np.arange(6, dtype=np.float32))
    assert np.array_equal(gpu.download(dst), np.arange(6, dtype=np.float32).reshape(2, 3))


def test_launches_are_checked_against_the_prototype_and_the_block(cp, monkeypatch):
    gpu = cuda.CudaBackend(0)
    y = gpu.zeros(4)
    with pytest.raises(TypeError, match=r"kernel fill_f32 \(basic.cu\): argument 2 'n' is i64"):
        gpu.launch(cuda.BASIC, "fill_f32", 4, y, np.float32(1), np.int32(4))
    with pytest.raises(ValueError, match="kernel fill_f32: 96 threads per block"):
        gpu.launch_blocks(cuda.BASIC, "fill_f32", 1, 96, y, np.float32(1), np.int64(4))
    assert cp.ops("kernel") == []


def test_kernels_compile_without_contracting_multiply_adds(cp):
    gpu = cuda.CudaBackend(0)
    gpu.fill(gpu.zeros(2), 0.0)
    assert [options for _, _, options in cp.ops("compile")] == [cuda.NVRTC_OPTIONS]
    assert "--fmad=false" in cuda.NVRTC_OPTIONS


class _Reader:
    read_ahead = True

    def __init__(self):
        self.n = 0

    def next_batch(self, data):
        self.n += 1
        data[...] = self.n

    def checkpoint(self):
        return self.n


def test_staging_zero_fill_is_ordered_before_the_first_side_stream_upload(cp):
    from trainnet.layers.data_base import StagedReader
    gpu = cuda.CudaBackend(0)
    cp.log.clear()
    staged = StagedReader(_Reader(), [(2, 3)], gpu)
    top = gpu.zeros((2, 3))
    staged.forward([top])
    log = cp.log
    fills = [i for i, e in enumerate(log) if e[0] == "memset"][:2]  # the two staging buffers
    zeroed = next(i for i, e in enumerate(log) if e[0] == "record")
    first_upload = next(i for i, e in enumerate(log) if e[0] == "memcpy" and e[1] == gpu.side.ptr)
    assert log[zeroed][1] == gpu.stream.ptr and max(fills) < zeroed
    waits = [e for e in log[:first_upload] if e[0] == "wait" and e[1] == gpu.side.ptr]
    assert waits and waits[0][2] == log[zeroed][2]  # the side stream waits for the fill
    assert np.array_equal(gpu.download(top), np.ones((2, 3), np.float32))


# --- the same on a real GPU (skipped without one) ----------------------------------------------

def _real_gpu():
    from trainnet.runtime.device import gpu_count
    return gpu_count() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not _real_gpu(), reason="no CUDA GPU here (CuPy missing or no device)")
@pytest.mark.parametrize("tf32_second", [False, True])
def test_real_capture_with_gemms_and_kernels_while_another_backend_is_current(tf32_second):
    """What the fakes above stand for: a captured iteration with a GEMM replays its work, with
    another backend's stream current (CuPy 13's wrappers refused cuBLAS under capture)."""
    import cupy
    first, second = cuda.CudaBackend(0), cuda.CudaBackend(0, tf32=tf32_second)
    rng = np.random.default_rng(0)
    a_host, b_host = (rng.standard_normal((64, 48), np.float32),
                      rng.standard_normal((48, 32), np.float32))
    a, b, c = first.zeros((64, 48)), first.zeros((48, 32)), first.zeros((64, 32))
    first.upload(a, a_host)
    first.upload(b, b_host)

    def iteration():
        first.fill(c, 1.0)
        first.gemm(a, b, c, beta=1.0)   # c = a b + 1
        first.axpy(c, c, 1.0)           # c = 2 (a b + 1)

    with second.stream:  # CuPy's current stream is the other backend's
        iteration()  # eager: compiles
        first.fill(c, 0.0)
        graph = first.capture(iteration)
        assert not first.download(c).any()  # captured, not run
        graph.replay()
        got = first.download(c)
    np.testing.assert_allclose(got, 2 * (a_host @ b_host + 1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="does not fit"):
        first.upload(a, a_host[:10])
    cupy.cuda.runtime.deviceSynchronize()
