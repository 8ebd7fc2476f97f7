"""trainnet: a config-file driven neural-network trainer in the Caffe tradition.

The Python API: ``trainnet.Net`` and ``trainnet.Solver`` (the objects ``trainnet.caffe`` offers
under pycaffe's names) and ``trainnet.check_gradient``; they load on first use, so ``import
trainnet`` stays light (no layers, no CuPy).
"""

from trainnet.errors import ConfigError, TrainnetError

__version__ = "0.1.0"
__all__ = ["ConfigError", "Net", "Solver", "TrainnetError", "__version__", "check_gradient"]


def __getattr__(name: str):
    if name in ("Net", "Solver"):
        from trainnet import caffe
        return getattr(caffe, name)
    if name == "check_gradient":
        from trainnet.runtime.gradcheck import check_gradient
        return check_gradient
    raise AttributeError(f"module 'trainnet' has no attribute '{name}'")
