import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """Where the real datasets are: TRAINNET_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("TRAINNET_DATA")
    if env:
        return Path(env)
    guess = ROOT.parent / "shared" / "data"
    return guess if guess.is_dir() else None


def _dataset(folder: str, marker: str, what: str) -> Path:
    """``<data root>/<folder>`` when it holds ``marker``; skips outside CI when absent, fails
    under CI=true."""
    root = data_root()
    path = root / folder if root else None
    if path is None or not (path / marker).is_file():
        msg = f"{what} not found: set TRAINNET_DATA to a folder holding {folder}/{marker}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def mnist_dir() -> Path:
    """The MNIST folder (the four IDX .gz files)."""
    return _dataset("mnist", "train-images-idx3-ubyte.gz", "MNIST")


@pytest.fixture
def caffe_lenet(mnist_dir) -> Path:
    """The LeNet Caffe trained (caffe/lenet/lenet_iter_10000.caffemodel); its tests read MNIST too."""
    return _dataset("caffe/lenet", "lenet_iter_10000.caffemodel", "Caffe's LeNet") / \
        "lenet_iter_10000.caffemodel"


@pytest.fixture
def cifar_dir() -> Path:
    """The CIFAR-10 folder (the binary batches, batches.meta.txt and Caffe's mean.binaryproto)."""
    return _dataset("cifar10", "data_batch_1.bin", "CIFAR-10")


def _gpu_params():
    from emulation.backend import compiler
    emulated = pytest.param("emulated", marks=[pytest.mark.gpu] + (
        [] if compiler() else [pytest.mark.skip(reason="no GCC C++ compiler for the emulated GPU")]))
    from trainnet.runtime.device import gpu_count
    real = pytest.param("cuda", marks=[pytest.mark.gpu] + (
        [] if gpu_count() else [pytest.mark.skip(reason="no CUDA GPU here (CuPy missing or no device)")]))
    return [emulated, real]


@pytest.fixture(params=_gpu_params())
def gpu_device(request):
    """A GPU device: the emulated backend (runs in CI) or a real CUDA GPU (when present)."""
    from trainnet.runtime.device import GpuDevice, get_device
    if request.param == "emulated":
        from emulation.backend import EmulatedBackend
        return GpuDevice(EmulatedBackend(), "cuda:emulated")
    return get_device("cuda")
