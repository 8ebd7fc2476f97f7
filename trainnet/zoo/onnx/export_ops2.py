"""ONNX export handlers for the layers with weights or windows: Convolution, Deconvolution,
InnerProduct, Pooling (Caffe's rounding as explicit pads), BatchNorm (+ Scale folded), Scale,
Bias, LRN and MVN."""

from __future__ import annotations

import numpy as np

from trainnet.zoo.onnx.export_ops import F32, register


def _conv_attrs(layer) -> dict:
    return dict(kernel_shape=[layer.kh, layer.kw], strides=[layer.sh, layer.sw],
                pads=[layer.ph, layer.pw, layer.ph, layer.pw], dilations=[layer.dh, layer.dw],
                group=layer.p.group)


@register("Convolution")
def convolution(g, step):
    inputs = g.bottoms(step) + [g.param(step, j) for j in range(len(step.params))]
    return [g.node("Conv", inputs, g.top(step), step, **_conv_attrs(step.layer))]


@register("Deconvolution")
def deconvolution(g, step):
    """Caffe's deconvolution weight (C_in, out/group, kh, kw) is ConvTranspose's layout, and its
    output size s(H-1) + d(k-1) + 1 - 2p is ConvTranspose's without output padding."""
    inputs = g.bottoms(step) + [g.param(step, j) for j in range(len(step.params))]
    return [g.node("ConvTranspose", inputs, g.top(step), step, **_conv_attrs(step.layer))]


@register("InnerProduct")
def inner_product(g, step):
    layer, x = step.layer, g.bottoms(step)[0]
    shape = g.shape(step.bottoms[0])
    axis = layer.p.axis % len(shape)
    bias = [g.param(step, 1)] if layer.p.bias_term else []
    if axis == 1:
        flat = x if len(shape) == 2 else g.node("Flatten", [x], step=step, axis=1)
        return [g.node("Gemm", [flat, g.param(step, 0)] + bias, g.top(step), step,
                       transB=0 if layer.p.transpose else 1)]
    if axis == 0:
        g.across_batch = True
    rows = g.node("Reshape", [x, g.ints([0] * axis + [-1], "shape")], step=step)
    w = g.param(step, 0)
    if not layer.p.transpose:
        w = g.node("Transpose", [w], step=step, perm=[1, 0])
    y = g.node("MatMul", [rows, w], None if bias else g.top(step), step)
    return [g.node("Add", [y] + bias, g.top(step), step)] if bias else [y]


def _end_pad(out: int, size: int, kernel: int, stride: int, begin: int) -> int:
    """The end pad that makes floor-mode pooling give ``out`` windows (never negative: floor
    rounding then gives the same count)."""
    return max(0, (out - 1) * stride + kernel - size - begin)


@register("Pooling")
def pooling(g, step):
    layer, x = step.layer, g.bottoms(step)[0]
    p, ave = layer.p, layer.p.pool == "AVE"
    if p.global_pooling:
        op = "GlobalAveragePool" if ave else "GlobalMaxPool"
        return [g.node(op, [x], g.top(step), step)]
    window = dict(kernel_shape=[layer.kh, layer.kw], strides=[layer.sh, layer.sw])
    if not ave:  # padded cells never win a max: pads begin at Caffe's, end where its last window does
        ends = [_end_pad(layer.Ho, layer.H, layer.kh, layer.sh, layer.ph),
                _end_pad(layer.Wo, layer.W, layer.kw, layer.sw, layer.pw)]
        return [g.node("MaxPool", [x], g.top(step), step, pads=[layer.ph, layer.pw] + ends,
                       **window)]
    # AVE divides by the window clipped to H + pad: the true pad as zeros that count, the
    # overhang of Caffe's ceil-rounded last window as pads that do not
    if layer.ph or layer.pw:
        pads = g.ints([0, 0, layer.ph, layer.pw, 0, 0, layer.ph, layer.pw], "pads")
        x = g.node("Pad", [x, pads], step=step, mode="constant")
    H, W = layer.H + 2 * layer.ph, layer.W + 2 * layer.pw
    ends = [_end_pad(layer.Ho, H, layer.kh, layer.sh, 0), _end_pad(layer.Wo, W, layer.kw, layer.sw, 0)]
    return [g.node("AveragePool", [x], g.top(step), step, pads=[0, 0] + ends,
                   count_include_pad=0, **window)]


def _channel_stats(g, step) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm's inference mean and variance from Caffe's three blobs (factor 0 gives 0)."""
    keys = [g.plan.params[u.slot].key for u in step.params]
    from trainnet.formats.weightkey import weight_key
    mean_sum, var_sum, factor = (np.asarray(g.params[weight_key(*k)], F32) for k in keys)
    s = factor.reshape(-1)[0]
    k = F32(0) if s == 0 else F32(1) / s
    return mean_sum * k, var_sum * k


@register("BatchNorm")
def batch_norm(g, step):
    layer = step.layer
    if not layer.global_stats:
        raise g.error(step, "use_global_stats false normalizes by each batch's own statistics "
                      "in the TEST phase; export keeps only the stored ones (set it true or "
                      "leave it out)")
    mean, var = _channel_stats(g, step)
    C = layer.C
    inputs = g.bottoms(step) + [g.const(np.ones(C, F32), "gamma"), g.const(np.zeros(C, F32), "beta"),
                                g.const(mean, "mean"), g.const(var, "var")]
    return [g.node("BatchNormalization", inputs, g.top(step), step, epsilon=float(F32(layer.p.eps)))]


def _fold_into_batch_norm(g, step):
    """A learned per-channel Scale on a BatchNorm's top that nothing else has read becomes that
    BatchNormalization's gamma (and beta); returns the Scale's top, or None."""
    x = g.bottoms(step)[0]
    node, producer = g.producer.get(x, (None, None))
    if (node is None or producer.type != "BatchNorm" or g.uses.get(x, 0)
            or not producer.layer.folds(step.layer)):
        return None
    C = step.layer.shape[0]
    node.input[1] = g.param(step, 0, (C,))
    node.input[2] = g.param(step, 1, (C,)) if step.layer.p.bias_term else \
        g.const(np.zeros(C, F32), "beta")
    node.output[0] = g.top(step)
    g.producer[node.output[0]] = (node, step)
    return node.output[0]


def _operand(g, step, j: int = 0) -> str:
    """Scale's or Bias's operand (a parameter or the second bottom) shaped to broadcast
    against the first bottom from the layer's axis."""
    layer = step.layer
    n, trailing = len(layer.shape), _operand_trailing(g, step)
    if layer.learned:
        return g.param(step, j, tuple(layer.shape) + trailing)
    operand = g.bottoms(step)[1]
    if not trailing:
        return operand
    return g.node("Reshape", [operand, g.ints([0] * n + list(trailing), "shape")], step=step)


@register("Scale")
def scale(g, step):
    folded = _fold_into_batch_norm(g, step)
    if folded:
        return [folded]
    x, layer = g.bottoms(step)[0], step.layer
    bias = layer.p.bias_term
    y = g.node("Mul", [x, _operand(g, step)], None if bias else g.top(step), step)
    if bias:
        y = g.node("Add", [y, g.param(step, len(step.params) - 1, tuple(layer.shape) +
                                      _operand_trailing(g, step))], g.top(step), step)
    return [y]


def _operand_trailing(g, step) -> tuple:
    layer = step.layer
    rank, n = len(g.shape(step.bottoms[0])), len(layer.shape)
    return (1,) * (rank - (layer.p.axis % rank if n else 0) - n)


@register("Bias")
def bias(g, step):
    return [g.node("Add", [g.bottoms(step)[0], _operand(g, step)], g.top(step), step)]


@register("LRN")
def lrn(g, step):
    layer, x = step.layer, g.bottoms(step)[0]
    p = layer.p
    if p.norm_region == "ACROSS_CHANNELS":
        return [g.node("LRN", [x], g.top(step), step, size=p.local_size, alpha=float(p.alpha),
                       beta=float(p.beta), bias=float(p.k))]
    # WITHIN_CHANNEL: x (1 + alpha * mean of x^2 over the zero-padded n x n window)^-beta
    half = (p.local_size - 1) // 2
    sq = g.node("Mul", [x, x], step=step)
    mean = g.node("AveragePool", [sq], step=step, kernel_shape=[p.local_size] * 2,
                  pads=[half] * 4, count_include_pad=1)
    scaled = g.node("Add", [g.node("Mul", [mean, g.const(F32(p.alpha), "alpha")], step=step),
                            g.const(F32(1), "one")], step=step)
    factor = g.node("Pow", [scaled, g.const(F32(-p.beta), "beta")], step=step)
    return [g.node("Mul", [factor, x], g.top(step), step)]


@register("MVN")
def mvn(g, step):
    layer, x = step.layer, g.bottoms(step)[0]
    rank = len(g.shape(step.bottoms[0]))
    axes = list(range(1 if layer.p.across_channels else 2, rank))
    if not axes:  # one value per row: its mean is itself
        x = g.node("Unsqueeze", [x, g.ints([rank], "axes")], step=step)
        axes = [rank]
    mean = g.node("ReduceMean", [x], step=step, axes=axes, keepdims=1)
    centred = g.node("Sub", [x, mean], None, step)
    if layer.p.normalize_variance:
        var = g.node("ReduceMean", [g.node("Mul", [centred, centred], step=step)], step=step,
                     axes=axes, keepdims=1)
        divisor = g.node("Add", [g.node("Sqrt", [var], step=step),
                                 g.const(F32(layer.p.eps), "eps")], step=step)
        centred = g.node("Div", [centred, divisor], step=step)
    if axes == [rank]:
        centred = g.node("Squeeze", [centred, g.ints([rank], "axes")], step=step)
    return [g.node("Identity", [centred], g.top(step), step)]
