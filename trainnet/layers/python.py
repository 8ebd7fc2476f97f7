"""Python: a layer written by the user in Python, with pycaffe's contract (Caffe's ``Python`` type).

``python_param { module layer param_str }`` names a class that subclasses ``PythonLayer``
(``trainnet.caffe.Layer``); the module is imported with importlib from ``sys.path`` (PYTHONPATH,
installed packages), never from the config's folder.  The class implements

    setup(self, bottom, top)                    check the bottoms, add learnable blobs
    reshape(self, bottom, top)                  give every top its shape
    forward(self, bottom, top)                  write top[i].data
    backward(self, top, propagate_down, bottom) write bottom[i].diff and self.blobs[j].diff

with ``self.param_str``, ``self.phase`` (0 TRAIN, 1 TEST, as pycaffe) and ``self.blobs``
(``add_blob(*shape)``).  ``setup`` and ``reshape`` run once, when the net is compiled, on blobs
that have shapes but no contents; the blobs added in ``setup`` become the layer's parameters, with
the values ``setup`` wrote as their initial values.  Forward and backward then see the step's
arrays (``python_blob``).  ``has_backward = False`` on the class says it has no backward;
``cupy_arrays = True`` hands it CuPy arrays on a GPU instead of host copies.  An exception in the
user's code becomes one ``PythonLayerError`` naming the layer and class, with its traceback.
"""

from __future__ import annotations

import importlib
import traceback
from typing import Any, Optional

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.layers.base import Layer, ParamBlob, StepIO, count_tops, register
from trainnet.layers.fillers import InitialValues
from trainnet.layers.python_blob import Blob, BlobVec, StepBlobs, shape_only
from trainnet.netcfg.common import Strict

PHASES = {"TRAIN": 0, "TEST": 1}


class PythonParams(Strict):
    """Caffe's PythonParameter."""

    module: str = ""
    layer: str = ""
    param_str: str = ""
    share_in_parallel: bool = False  # Caffe's multi-GPU sharing; every rank has its own layer here


class PythonLayer:
    """The base class of a user's Python layer (pycaffe's ``caffe.Layer``, ``trainnet.caffe.Layer``).

    A subclass defines ``setup`` and ``forward``, and ``reshape`` and ``backward`` where it needs
    them.  It is made by trainnet with ``cls(param_str=..., phase=...)``: an ``__init__`` of its
    own takes those keywords and calls ``super().__init__(**kw)``."""

    type = "Python"       # as pycaffe's Layer.type
    has_backward = True   # False: the layer has no gradient (a net needing one is refused)
    cupy_arrays = False   # True: on a GPU, data and diff are CuPy arrays, not host copies

    def __init__(self, param_str: str = "", phase: int = 0):
        self.param_str = param_str
        self.phase = phase
        self.blobs = BlobVec(type(self).__name__)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Give each top its shape (called once, after ``setup``)."""

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no backward: define backward(top, "
                                  "propagate_down, bottom), or set has_backward = False")


class PythonLayerError(TrainnetError):
    """An exception raised in a Python layer's own code: names the layer, its module.Class and the
    method, and carries the user's traceback (``user_traceback``)."""

    def __init__(self, layer: str, where: str, method: str, exc: BaseException):
        self.layer, self.where, self.method = layer, where, method
        frames = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        self.user_traceback = "".join(traceback.format_exception(type(exc), exc, frames))
        super().__init__(f"layer '{layer}' (Python {where}): {method} raised "
                         f"{type(exc).__name__}: {exc}\n{self.user_traceback.rstrip()}")


def _import_class(layer: "Python") -> type:
    """The class ``python_param`` names, or a ConfigError naming the layer and the module."""
    module, name = layer.p.module, layer.p.layer
    if not module or not name:
        raise layer.error("python_param needs module and layer (the module and the class in it)")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise layer.error(f"module '{module}' not found on sys.path (PYTHONPATH or an installed "
                              "package; the config's folder is not searched)") from None
        raise PythonLayerError(layer.name, module, "import", exc) from exc
    except Exception as exc:
        raise PythonLayerError(layer.name, module, "import", exc) from exc
    cls = getattr(mod, name, None)
    if cls is None:
        raise layer.error(f"module '{module}' has no class '{name}'")
    if not (isinstance(cls, type) and issubclass(cls, PythonLayer)):
        raise layer.error(f"'{module}.{name}' is not a subclass of trainnet.caffe.Layer "
                          "(trainnet.layers.python.PythonLayer)")
    missing = [m for m in ("setup", "forward") if not callable(getattr(cls, m, None))]
    if missing:
        raise layer.error(f"'{module}.{name}' does not define {' and '.join(missing)}")
    return cls


@register("Python")
class Python(Layer):
    Params = PythonParams
    caffe_params = {"python_param": None}
    num_bottoms = (0, None)
    num_tops = (0, None)
    host_only = True  # the user's code runs on the host every pass: no CUDA graph
    backward_reads_bottom = True
    backward_reads_top = True
    _given: Optional[PythonLayer] = None  # an instance to wrap (``around``), else one is made

    @classmethod
    def around(cls, instance: PythonLayer, bottom_shapes: list, num_tops: int = 1,
               name: str = "python", phase: str = "TRAIN") -> "Python":
        """A trainnet layer over a user's fresh ``instance`` (the gradient checker's way in)."""
        kind = type(instance)
        params = PythonParams(module=kind.__module__, layer=kind.__qualname__,
                              param_str=instance.param_str)
        layer = cls.__new__(cls)
        layer._given = instance
        Layer.__init__(layer, name, params, phase, bottom_shapes, _Tops(num_tops))
        return layer

    @property
    def where(self) -> str:
        return f"{self.p.module}.{self.p.layer}"

    def setup(self, bottom_shapes):
        if self._given is not None:
            self.user = self._given
        else:
            cls = _import_class(self)
            self.user = self.call(cls, "__init__", param_str=self.p.param_str,
                                  phase=PHASES[self.phase])
        if not isinstance(getattr(self.user, "blobs", None), BlobVec):
            raise self.error(f"'{self.where}' has no blobs: its __init__ must call "
                             "super().__init__(param_str=..., phase=...)")
        self.user.blobs.owner = self.describe()
        bottom = [Blob(shape_only(s), shape_only(s)) for s in bottom_shapes]
        top = [Blob(shape_only(()), shape_only(())) for _ in range(count_tops(self))]
        self.call(self.user.setup, "setup", bottom, top)
        self.call(self.user.reshape, "reshape", bottom, top)
        self.has_backward = bool(type(self.user).has_backward)
        self._params = [ParamBlob(b.shape, InitialValues(values=b.data.astype("float32").tobytes()))
                        for b in self.user.blobs]
        for b in self.user.blobs:
            b.owner, b.fixed = self.describe(), True
        return [t.shape for t in top]

    def adopt(self, instance: PythonLayer) -> None:
        """Run ``instance``, this layer's object in a net compiled before (a re-plan for new
        input shapes), instead of the one made here: pycaffe keeps a Python layer's object
        across a reshape and calls only its ``reshape``, which is called here too."""
        bottom = [Blob(shape_only(s), shape_only(s)) for s in self.bottom_shapes]
        top = [Blob(shape_only(s), shape_only(s)) for s in self.top_shapes]
        self.call(instance.reshape, "reshape", bottom, top)
        if [t.shape for t in top] != [tuple(s) for s in self.top_shapes]:
            raise self.error(f"'{self.where}': its reshape gives tops {[t.shape for t in top]} "
                             f"where a new instance gives {list(self.top_shapes)}")
        self.user = instance

    def describe(self) -> str:
        return f"layer '{self.name}' (Python {self.where})"

    def call(self, fn, method: str, *args, **kw) -> Any:
        """``fn(*args)`` from the user's code; its exceptions become one PythonLayerError."""
        try:
            return fn(*args, **kw)
        except TrainnetError:
            raise
        except Exception as exc:
            raise PythonLayerError(self.name, self.where, method, exc) from exc

    def param_blobs(self):
        return self._params

    def make_state(self, rng, device=None) -> StepBlobs:
        gpu = device is not None and device.is_gpu
        host_copies = gpu and not self.user.cupy_arrays
        zeros = device.zeros if gpu and not host_copies else _host_zeros
        return StepBlobs(self.describe(), self.bottom_shapes, self.top_shapes, list(self.user.blobs),
                         host_copies, zeros)

    def _run(self, io: StepIO, backward: bool) -> None:
        blobs: StepBlobs = io.state if io.state is not None else self.make_state(None)
        propagate = blobs.bind(io, io.gpu, backward)
        if backward:
            self.call(self.user.backward, "backward", blobs.top, propagate, blobs.bottom)
        else:
            self.call(self.user.forward, "forward", blobs.bottom, blobs.top)
        blobs.finish(io, io.gpu, backward)

    def forward_cpu(self, io: StepIO) -> None:
        self._run(io, False)

    def backward_cpu(self, io: StepIO) -> None:
        self._run(io, True)

    forward_gpu = forward_cpu  # StepBlobs made for the device does the copies
    backward_gpu = backward_cpu


class _Tops:
    """A stand-in for a layer config that names ``n`` tops (``around``)."""

    def __init__(self, n: int):
        self.top = [f"top{i}" for i in range(n)]


def _host_zeros(shape, dtype):
    return np.zeros(shape, dtype)
