"""The layer contract and the registry keyed by Caffe's type strings.

A layer declares its arity, whether it may run in place, its parameter blobs and whether it
has a backward; the compiler reads only that.  ``setup`` infers top shapes once, at compile
time.  ``forward``/``backward`` receive a ``StepIO`` whose arrays are views the plan assigned,
and write their results into them: a layer never allocates while running.

Device dispatch happens here and nowhere else: ``forward`` calls ``forward_gpu`` when the
device is a GPU, ``forward_cpu`` otherwise, and ``buffers`` likewise ``buffers_gpu`` or
``buffers_cpu``.  What the plan decided for the step (forward-only, device kind, a fused ReLU,
folded layers) reaches the layer as a frozen ``StepContext`` (``buffers(ctx)``, ``io.ctx``):
nothing is set on a layer after it is built.  A GPU pass gets the device's backend as ``io.gpu``
(kernels, cuBLAS) and device arrays everywhere else in ``io``; it writes the same results as the
CPU pass, which is the reference its tests compare against.
"""

from __future__ import annotations

import importlib

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import numpy as np

from trainnet.data.paths import DataRoot
from trainnet.errors import ConfigError
from trainnet.netcfg.common import FillerParameter, Strict
from trainnet.netcfg.layer_types import LAYER_TYPES

Shape = tuple[int, ...]


class NoParams(Strict):
    """Parameters of a layer type that takes none."""


@dataclass(frozen=True)
class ParamBlob:
    """A parameter blob a layer owns: its shape and how it is initialised.  ``learned=False``
    marks state the layer updates itself in forward (BatchNorm's statistics): the solver gives
    it no gradient, no history step and no weight decay, but it is saved and loaded by name
    with the weights."""

    shape: Shape
    filler: FillerParameter
    learned: bool = True


@dataclass(frozen=True)
class Buffer:
    """Private memory of a layer, live from the step's forward to its backward (an argmax, a
    mask); not kept to the next iteration unless ``keep`` is set (a border written once).
    ``scratch``: valid within one forward or one backward call only (im2col columns, which
    backward recomputes), in one workspace all steps share; a data layer declares none."""

    shape: Shape
    dtype: Any = np.float32
    keep: bool = False
    scratch: bool = False


@dataclass(frozen=True)
class StepContext:
    """What the plan decided for one step, given to its layer rather than set on it: whether a
    backward runs (``forward_only``: keep nothing for it, bound scratch instead), the device
    kind (``gpu``: declare the GPU pass's buffers), an in-place ReLU folded into the layer's
    epilogue (``fused_relu``: its backward masks the top gradient by ``top > 0`` first), the
    layers folded into the step (``folded``: a Scale into its BatchNorm) and whether its top is
    its bottom's memory (``in_place``: configured so, or made so by the compiler)."""

    forward_only: bool = False
    gpu: bool = False
    fused_relu: bool = False
    folded: tuple["Layer", ...] = ()
    in_place: bool = False


NO_PLAN = StepContext()  # a layer run outside a plan (tests): full forward and backward, CPU


@dataclass
class StepIO:
    """Everything one layer reads and writes, bound once when a Net is built.

    ``bottom_diff[i]`` is None when bottom i needs no gradient, ``param_diff[i]`` when
    parameter i is frozen (``lr_mult: 0``).  Backward overwrites the diffs it writes.
    ``state`` is the layer's runtime object (a data reader), ``rng`` the net's random generator,
    ``gpu`` the GPU backend when the net runs on one (None on the CPU), ``ctx`` what the plan
    decided for the step.
    """

    bottom: list[np.ndarray]
    top: list[np.ndarray]
    bottom_diff: list[Optional[np.ndarray]]
    top_diff: list[Optional[np.ndarray]]
    params: list[np.ndarray]
    param_diff: list[Optional[np.ndarray]]
    buf: dict[str, np.ndarray] = field(default_factory=dict)
    state: Any = None
    rng: Optional[np.random.Generator] = None
    gpu: Any = None
    ctx: StepContext = NO_PLAN


class Layer(ABC):
    """Base class of all layers.  Subclasses set the class attributes and implement the math."""

    type: ClassVar[str] = ""
    Params: ClassVar[type[Strict]] = NoParams
    num_bottoms: ClassVar[tuple[int, Optional[int]]] = (1, 1)  # min, max (None: any)
    num_tops: ClassVar[tuple[int, Optional[int]]] = (1, 1)
    in_place_ok: ClassVar[bool] = False      # top may share the bottom's memory
    is_data: ClassVar[bool] = False          # a source: tops need no gradient
    filled_by_user: ClassVar[bool] = False   # tops written before the pass (Input)
    is_loss: ClassVar[bool] = False          # top 0 gets loss_weight 1 by default
    host_only: ClassVar[bool] = False        # forward works on the host (writes a file): no CUDA graph
    has_backward: ClassVar[bool] = True
    no_grad_bottoms: ClassVar[tuple[int, ...]] = ()  # bottoms that never take a gradient (labels)
    # What backward reads besides the diffs; the memory planner keeps these alive.
    backward_reads_bottom: ClassVar[bool] = True
    backward_reads_top: ClassVar[bool] = False
    can_fuse_relu: ClassVar[bool] = False    # applies a following in-place ReLU in its epilogue
    # Where a prototxt keeps this type's parameters (YAML flattens them onto the layer): Caffe's
    # LayerParameter sub-message name -> the Params fields it holds, None for every field that no
    # other message of the type claims.  ``{"softmax_param": ("axis",), "loss_param": None}``.
    caffe_params: ClassVar[dict[str, Optional[tuple[str, ...]]]] = {}
    # Params fields trainnet adds to Caffe's message (Caffe's parser would refuse them).
    beyond_caffe: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, params: Strict, phase: str, bottom_shapes: list[Shape],
                 common: Any = None, data_root: Optional[DataRoot] = None):
        self.name = name
        self.p = params
        self.phase = phase
        self.common = common  # the LayerConfig, for fields like transform_param
        # where the config's relative data paths start (a source, a mean file), for ``setup``
        self.data_root = data_root if data_root is not None else DataRoot()
        self.bottom_shapes = [tuple(s) for s in bottom_shapes]
        self.top_shapes: list[Shape] = [tuple(s) for s in self.setup(self.bottom_shapes)]

    # --- compile-time contract -------------------------------------------------------------
    @abstractmethod
    def setup(self, bottom_shapes: list[Shape]) -> list[Shape]:
        """Check bottom shapes and return top shapes.  Raise ``self.error`` on a misfit."""

    def param_blobs(self) -> list[ParamBlob]:
        return []

    def buffers(self, ctx: StepContext = NO_PLAN) -> dict[str, Buffer]:
        """The private memory of the step's pass: ``buffers_gpu`` on a GPU, else ``buffers_cpu``
        (``ctx`` says which, and whether a backward runs)."""
        return (self.buffers_gpu if ctx.gpu else self.buffers_cpu)(ctx)

    def buffers_cpu(self, ctx: StepContext) -> dict[str, Buffer]:
        return {}

    def buffers_gpu(self, ctx: StepContext) -> dict[str, Buffer]:
        """The GPU pass's buffers; a layer that declares none uses its CPU pass's."""
        return self.buffers_cpu(ctx)

    def reads_bottom(self, ctx: StepContext) -> bool:
        """Whether the step's backward reads the bottoms (the memory planner keeps them)."""
        return self.backward_reads_bottom

    def reads_top(self, ctx: StepContext) -> bool:
        """Whether the step's backward reads the tops: a folded ReLU masks by the top."""
        return self.backward_reads_top or ctx.fused_relu

    def folds(self, layer: "Layer") -> bool:
        """Whether ``layer``, reading this layer's only top, can be folded into this step, which
        then does its work too (BatchNorm folds a learned per-channel Scale)."""
        return False

    @property
    def fuses_as_relu(self) -> bool:
        """An in-place ReLU a ``can_fuse_relu`` producer may apply in its epilogue."""
        return False

    def flops(self) -> int:
        """Forward multiply-adds counted as 2 flops; elementwise ops as 1 per element."""
        return 0

    def make_state(self, rng: np.random.Generator, device=None) -> Any:
        """Runtime state this layer keeps (a data reader), made when a Net is built on
        ``device`` (None: the CPU)."""
        return None

    @classmethod
    def caffe_notes(cls, params: Strict) -> list[str]:
        """What Caffe would not read as trainnet does in a prototxt written from ``params``."""
        extra = [f for f in cls.beyond_caffe if f in params.model_fields_set]
        if not extra:
            return []
        return [f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} trainnet's own: Caffe's "
                "parser refuses them (remove them for Caffe)"]

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, layer=self.name, layer_type=self.type)

    # --- running ---------------------------------------------------------------------------
    def forward(self, io: StepIO, device) -> None:
        (self.forward_gpu if device.is_gpu else self.forward_cpu)(io)

    def backward(self, io: StepIO, device) -> None:
        (self.backward_gpu if device.is_gpu else self.backward_cpu)(io)

    @classmethod
    def has_gpu(cls) -> bool:
        return cls.forward_gpu is not Layer.forward_gpu

    @abstractmethod
    def forward_cpu(self, io: StepIO) -> None:
        """The reference implementation: NumPy, writing into ``io``'s arrays."""

    @abstractmethod
    def backward_cpu(self, io: StepIO) -> None:
        """Gradients into ``io.bottom_diff`` (where not None) and ``io.param_diff``."""

    def forward_gpu(self, io: StepIO) -> None:
        """The GPU pass: kernels and GEMMs through ``io.gpu``, into ``io``'s device arrays."""
        raise NotImplementedError(f"{self.type} has no GPU implementation")

    def backward_gpu(self, io: StepIO) -> None:
        raise NotImplementedError(f"{self.type} has no GPU backward")


def save_bottom(io: StepIO, device) -> None:
    """Copy the bottom to ``io.buf["bottom"]`` before an in-place forward overwrites it."""
    (io.gpu.copy if device.is_gpu else np.copyto)(io.buf["bottom"], io.bottom[0])


LAYERS = LAYER_TYPES  # netcfg owns the lookup; the layers fill it (register below)


def register(type_name: str):
    """Class decorator: ``@register("Convolution")``."""

    def deco(cls: type[Layer]) -> type[Layer]:
        cls.type = type_name
        return LAYERS.register(type_name)(cls)

    return deco


def layer_class(type_name: str) -> type[Layer]:
    """The class registered for ``type_name``; an unknown name lists the known ones."""
    importlib.import_module("trainnet.layers")  # registers every layer module

    return LAYERS[type_name]


def known_types() -> list[str]:
    importlib.import_module("trainnet.layers")

    return LAYERS.names()


def spatial_pair(values: list[int], h: Optional[int], w: Optional[int], default: int,
                 what: str) -> tuple[int, int]:
    """Caffe's ``kernel_size``/``kernel_h``/``kernel_w`` convention for 2-D layers."""
    if h is not None or w is not None:
        if values:
            raise ValueError(f"give either {what} or {what}_h/{what}_w, not both")
        if h is None or w is None:
            raise ValueError(f"{what}_h and {what}_w go together")
        return h, w
    if not values:
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise ValueError(f"{what}: expects 1 or 2 values for a 2-D layer, got {len(values)}")


def count_tops(layer: Layer, default: int = 1) -> int:
    """How many tops the layer's config names (``default`` when built without a config)."""
    tops = getattr(layer.common, "top", None)
    return len(tops) if tops else default


def fill_padded(dst: np.ndarray, x: np.ndarray, ph: int, pw: int, value: float) -> None:
    """Copy NCHW ``x`` into ``dst`` at offset (ph, pw) and set every other cell to ``value``.

    Only the border is written besides the interior, so a buffer reused as scratch is reset
    at the cost of its border.
    """
    H, W = x.shape[2:]
    if dst.shape[2:] == (H, W):  # no border (a batch-last copy): spare the empty writes
        np.copyto(dst, x)
        return
    dst[:, :, :ph] = value
    dst[:, :, ph + H:] = value
    dst[:, :, ph:ph + H, :pw] = value
    dst[:, :, ph:ph + H, pw + W:] = value
    np.copyto(dst[:, :, ph:ph + H, pw:pw + W], x)
