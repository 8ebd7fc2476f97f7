"""Import handlers for ONNX's element-wise, normalisation, shape and fully connected ops (the
convolutions, pooling and Pad are in import_conv)."""

from __future__ import annotations

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.zoo.onnx.import_context import HANDLERS, Context, attributes, scalar

FLOAT_MAX = float(np.finfo(np.float32).max)


def one_layer(ctx: Context, node, label: str, type_: str, params=None, blobs=(), fixed=False,
              nonneg: bool = False) -> str:
    """The node as one layer from its first input to its first output."""
    bottom = ctx.bottom(node.input[0], label)
    top = ctx.top(node.output[0])
    if nonneg:
        ctx.nonneg.add(node.output[0])
    return ctx.add_layer(ctx.layer_name(node), type_, [bottom], [top], params, blobs, fixed)


def constant(ctx: Context, node, label: str, i: int, what: str, default=None):
    """Input ``i`` as a constant array (``default`` when the input is absent)."""
    name = node.input[i] if len(node.input) > i else ""
    if not name:
        if default is None:
            raise TrainnetError(f"{label}: needs its {what} (input {i})")
        return np.asarray(default)
    value = ctx.const(name)
    if value is None:
        raise TrainnetError(f"{label}: its {what} '{name}' is computed at run time; trainnet "
                            "needs it constant")
    return value


def axis_of(ctx: Context, node, label: str, axis: int) -> int:
    return axis + len(ctx.shape(node.input[0], label)) if axis < 0 else axis


def _simple(type_: str, nonneg: bool = False):
    def handler(ctx: Context, node, label: str) -> None:
        one_layer(ctx, node, label, type_, nonneg=nonneg)
    return handler


HANDLERS.register("Relu")(_simple("ReLU", nonneg=True))
HANDLERS.register("Sigmoid")(_simple("Sigmoid", nonneg=True))
HANDLERS.register("Tanh")(_simple("TanH"))


@HANDLERS.register("LeakyRelu")
def leaky_relu(ctx: Context, node, label: str) -> None:
    alpha = scalar(attributes(node).get("alpha", 0.01))
    if alpha < 0:
        raise TrainnetError(f"{label}: alpha {alpha:g} < 0; trainnet's ReLU takes a slope >= 0")
    one_layer(ctx, node, label, "ReLU", {"negative_slope": alpha})


@HANDLERS.register("PRelu")
def prelu(ctx: Context, node, label: str) -> None:
    slope = constant(ctx, node, label, 1, "slope")
    shape = ctx.shape(node.input[0], label)
    full = (1,) * (len(shape) - slope.ndim) + slope.shape
    if slope.size == 1:
        one_layer(ctx, node, label, "PReLU", {"channel_shared": True}, [slope.reshape(1)])
    elif len(shape) >= 2 and slope.size == shape[1] and full[1] == shape[1]:
        one_layer(ctx, node, label, "PReLU", {}, [slope.reshape(-1)])
    else:
        raise TrainnetError(f"{label}: slope of shape {list(slope.shape)} is neither one value "
                            f"nor one per channel of the input {list(shape)}")


def _clip_layer(ctx: Context, node, label: str, bottom: str, top: str, low: float, high: float,
                suffix: str = "") -> None:
    ctx.add_layer(ctx.layer_name(node, suffix), "Clip", [bottom], [top],
                  {"min": low, "max": high})


@HANDLERS.register("Clip")
def clip(ctx: Context, node, label: str) -> None:
    low = scalar(constant(ctx, node, label, 1, "min", -FLOAT_MAX))
    high = scalar(constant(ctx, node, label, 2, "max", FLOAT_MAX))
    bottom, top = ctx.bottom(node.input[0], label), ctx.top(node.output[0])
    _clip_layer(ctx, node, label, bottom, top, low, high)
    if low >= 0:
        ctx.nonneg.add(node.output[0])


def _hard_sigmoid(ctx: Context, node, label: str, top: str, alpha: float, beta: float) -> str:
    """max(0, min(1, alpha x + beta)) as Power then Clip into ``top``; returns the input blob."""
    bottom = ctx.bottom(node.input[0], label)
    linear = ctx.blob(f"{node.output[0]}_linear")
    ctx.add_layer(ctx.layer_name(node, "_linear"), "Power", [bottom], [linear],
                  {"scale": alpha, "shift": beta})
    _clip_layer(ctx, node, label, linear, top, 0.0, 1.0, "_clip")
    return bottom


@HANDLERS.register("HardSigmoid")
def hard_sigmoid(ctx: Context, node, label: str) -> None:
    attrs = attributes(node)
    _hard_sigmoid(ctx, node, label, ctx.top(node.output[0]), scalar(attrs.get("alpha", 0.2)),
                  scalar(attrs.get("beta", 0.5)))
    ctx.nonneg.add(node.output[0])


@HANDLERS.register("HardSwish")
def hard_swish(ctx: Context, node, label: str) -> None:
    """x * HardSigmoid(x) with alpha 1/6, beta 1/2 (Power, Clip, Eltwise PROD)."""
    gate = ctx.blob(f"{node.output[0]}_gate")
    bottom = _hard_sigmoid(ctx, node, label, gate, 1 / 6, 0.5)
    ctx.add_layer(ctx.layer_name(node), "Eltwise", [bottom, gate], [ctx.top(node.output[0])],
                  {"operation": "PROD"})


@HANDLERS.register("Softmax")
def softmax(ctx: Context, node, label: str) -> None:
    axis = axis_of(ctx, node, label, int(attributes(node).get("axis", -1)))
    one_layer(ctx, node, label, "Softmax", {"axis": axis} if axis != 1 else {}, nonneg=True)


@HANDLERS.register("Concat")
def concat(ctx: Context, node, label: str) -> None:
    axis = axis_of(ctx, node, label, int(attributes(node)["axis"]))
    bottoms = [ctx.bottom(n, label) for n in node.input]
    ctx.add_layer(ctx.layer_name(node), "Concat", bottoms, [ctx.top(node.output[0])],
                  {"axis": axis} if axis != 1 else {})
    if all(n in ctx.nonneg for n in node.input):
        ctx.nonneg.add(node.output[0])


def _reshape(ctx: Context, node, label: str, dims: list[int]) -> None:
    """A Reshape layer; a first dim equal to the input's batch becomes 0 (copy it), so that the
    batch stays editable at the Input."""
    shape = ctx.shape(node.input[0], label)
    if dims and dims[0] == shape[0]:
        dims = [0, *dims[1:]]
    one_layer(ctx, node, label, "Reshape", {"shape": {"dim": [int(d) for d in dims]}},
              nonneg=node.input[0] in ctx.nonneg)


@HANDLERS.register("Flatten")
def flatten(ctx: Context, node, label: str) -> None:
    axis = axis_of(ctx, node, label, int(attributes(node).get("axis", 1)))
    if axis == 1:
        one_layer(ctx, node, label, "Flatten", nonneg=node.input[0] in ctx.nonneg)
    else:
        shape = ctx.shape(node.input[0], label)
        _reshape(ctx, node, label, [int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))])


@HANDLERS.register("Reshape")
def reshape(ctx: Context, node, label: str) -> None:
    dims = [int(d) for d in constant(ctx, node, label, 1, "shape").reshape(-1)]
    if attributes(node).get("allowzero", 0) and 0 in dims:
        raise TrainnetError(f"{label}: allowzero with a 0 in the shape {dims} makes an empty "
                            "tensor; trainnet's 0 copies the input's dimension")
    _reshape(ctx, node, label, dims)


@HANDLERS.register("Identity")
def identity(ctx: Context, node, label: str) -> None:
    ctx.alias(node.output[0], ctx.bottom(node.input[0], label))
    if node.input[0] in ctx.nonneg:
        ctx.nonneg.add(node.output[0])


@HANDLERS.register("Dropout")
def dropout(ctx: Context, node, label: str) -> None:
    """Identity at inference; kept as a Dropout layer so that fine-tuning trains with it."""
    if len(node.output) > 1 and node.output[1] and ctx.consumers.get(node.output[1]):
        raise TrainnetError(f"{label}: its mask output is read; trainnet's Dropout has none")
    ratio = scalar(constant(ctx, node, label, 1, "ratio", 0.5))
    if bool(constant(ctx, node, label, 2, "training_mode", False)):
        raise TrainnetError(f"{label}: training_mode is set; import an inference graph")
    one_layer(ctx, node, label, "Dropout", {"dropout_ratio": ratio} if ratio != 0.5 else {},
              nonneg=node.input[0] in ctx.nonneg)


@HANDLERS.register("LRN")
def lrn(ctx: Context, node, label: str) -> None:
    attrs = attributes(node)
    size = int(attrs["size"])
    if size % 2 == 0:
        raise TrainnetError(f"{label}: size {size} is even; Caffe's LRN window is centred (odd)")
    one_layer(ctx, node, label, "LRN", {"local_size": size,
                                        "alpha": scalar(attrs.get("alpha", 1e-4)),
                                        "beta": scalar(attrs.get("beta", 0.75)),
                                        "k": scalar(attrs.get("bias", 1.0))})


@HANDLERS.register("BatchNormalization")
def batch_norm(ctx: Context, node, label: str) -> None:
    """BatchNorm (mean, var, factor 1; global statistics) then Scale with bias (gamma, beta)."""
    attrs = attributes(node)
    if attrs.get("training_mode", 0) or any(o and ctx.consumers.get(o) for o in node.output[1:]):
        raise TrainnetError(f"{label}: training mode (running statistics as outputs); import an "
                            "inference graph")
    gamma, beta, mean, var = (constant(ctx, node, label, i, what) for i, what in
                              enumerate(("scale", "bias", "mean", "var"), start=1))
    bottom = ctx.bottom(node.input[0], label)
    normed = ctx.blob(f"{node.output[0]}_bn")
    ctx.add_layer(ctx.layer_name(node), "BatchNorm", [bottom], [normed],
                  {"use_global_stats": True, "eps": scalar(attrs.get("epsilon", 1e-5))},
                  [mean, var, np.ones(1)])
    ctx.add_layer(ctx.layer_name(node, "_scale"), "Scale", [normed], [ctx.top(node.output[0])],
                  {"bias_term": True}, [gamma, beta])
