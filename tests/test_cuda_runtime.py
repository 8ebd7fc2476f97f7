"""The CUDA sources compile, and the package works where CuPy or a GPU is missing."""

import shutil
import subprocess
import sys

import pytest

from trainnet.errors import TrainnetError
from trainnet.kernels import sources as kernels
from trainnet.runtime.device import CPU, get_device

NVCC = shutil.which("nvcc")
SOURCES = kernels.all_sources()


def test_every_layer_with_a_gpu_pass_has_its_source():
    names = {p.name for p in SOURCES}
    assert {"common.cuh"} <= {p.name for p in kernels.INCLUDE_DIR.iterdir()}
    assert {"basic.cu", "relu.cu"} <= names


def test_every_layer_type_has_a_gpu_pass():
    from trainnet.layers import known_types, layer_class

    assert [t for t in known_types() if not layer_class(t).has_gpu()] == []


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_cuda_source_compiles_for_sm80_and_sm90(source, tmp_path):
    archs = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in (80, 90)]
    result = subprocess.run([NVCC, *archs, "-std=c++17", "-c", f"-I{kernels.INCLUDE_DIR}",
                             "-Werror", "all-warnings", str(source), "-o", str(tmp_path / "k.o")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _run_without_cupy(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``import cupy`` fails."""
    prelude = "import sys; sys.modules['cupy'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True)


def test_import_and_cpu_work_without_cupy():
    result = _run_without_cupy(
        "import trainnet, trainnet.cli, trainnet.layers, trainnet.solver.solver\n"
        "from trainnet.runtime.device import get_device\n"
        "print(get_device('auto'))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cpu"


def test_cuda_without_cupy_is_one_clear_error():
    result = _run_without_cupy(
        "from trainnet.runtime.device import get_device\n"
        "try:\n    get_device('cuda:1')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    assert "TrainnetError" in result.stdout and "CuPy is not installed" in result.stdout
    assert "cuda12" in result.stdout


def test_device_specs():
    assert get_device("cpu") is CPU
    with pytest.raises(TrainnetError, match="unknown device 'tpu'"):
        get_device("tpu")
    with pytest.raises(TrainnetError, match="must be a number"):
        get_device("cuda:x")


def test_cuda_without_a_gpu_is_one_clear_error(monkeypatch):
    from trainnet.runtime import device
    pytest.importorskip("cupy")
    monkeypatch.setattr(device, "gpu_count", lambda: 0)
    with pytest.raises(TrainnetError, match="no CUDA GPU"):
        get_device("cuda")
    assert get_device("auto") is CPU


def test_kernel_arguments_are_typed():
    import numpy as np
    with pytest.raises(TypeError, match="argument 1 is int"):
        kernels.check_args("k", (np.zeros(3), 3), lambda a: isinstance(a, np.ndarray))
    with pytest.raises(ValueError, match="not C-contiguous"):
        kernels.check_args("k", (np.zeros((3, 3))[:, 1],), lambda a: isinstance(a, np.ndarray))


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception:  # no CuPy or no NVRTC library: the nvcc test above still runs
        return None


NVRTC = _nvrtc()


@pytest.mark.skipif(NVRTC is None, reason="CuPy's NVRTC binding is not usable here")
@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_cuda_source_compiles_with_nvrtc_as_the_backend_sends_it(source):
    """The exact text CudaBackend hands to CuPy's RawModule: headers inlined, no -I."""
    text = kernels.read_source(source)
    assert "#include" not in text and "GRID_STRIDE" in text
    for arch in (80, 90):
        prog = NVRTC.createProgram(text, source.name, [], [])
        try:
            NVRTC.compileProgram(prog, ["-std=c++17", f"--gpu-architecture=compute_{arch}"])
        except Exception:
            pytest.fail(NVRTC.getProgramLog(prog))
