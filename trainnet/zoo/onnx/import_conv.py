"""Import handlers for ONNX's windowed ops: Conv, ConvTranspose, MaxPool, AveragePool, the
global poolings, and a zero Pad folded into the Conv or pooling after it.

Caffe pads both ends of an axis alike.  ONNX's begin and end pads map exactly when Caffe, padding
both ends by the begin pad, places the same windows and gives the same output size (the extra
end pad then never reaches a window, or reaches only cells pooling ignores); otherwise the node is
refused with both pads.  An AveragePool whose divisors differ from Caffe's (count_include_pad=0,
ceil windows past the end) is AVE then a fixed Scale by Caffe's divisor over ONNX's, per output
position.
"""

from __future__ import annotations

from trainnet.errors import TrainnetError
from trainnet.zoo.onnx.import_context import HANDLERS, Context, PendingPad, attributes
from trainnet.zoo.onnx.import_ops import constant


def _pair(values, name: str, label: str, default: int) -> tuple[int, int]:
    values = list(values) if values is not None else [default, default]
    if len(values) != 2:
        raise TrainnetError(f"{label}: {name} {values}: trainnet's windows are 2-D")
    return int(values[0]), int(values[1])


def _pads(attrs: dict, size: tuple, kernel: tuple, stride: tuple, label: str) -> list[int]:
    """ONNX's [top, left, bottom, right], from ``pads`` or ``auto_pad``."""
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode in ("NOTSET", ""):
        pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
        if len(pads) != 4:
            raise TrainnetError(f"{label}: pads {pads}: trainnet's windows are 2-D")
        return pads
    if mode == "VALID":
        return [0, 0, 0, 0]
    total = [max((-(-h // s) - 1) * s + k - h, 0) for h, k, s in zip(size, kernel, stride)]
    small = [t // 2 for t in total]
    big = [t - t // 2 for t in total]
    return [*small, *big] if mode == "SAME_UPPER" else [*big, *small]


def _source(ctx: Context, name: str) -> tuple[str, list[int]]:
    """The tensor a window op really reads and the pads a folded Pad adds before it."""
    pad = ctx.pending_pads.pop(name, None)
    if pad is None:
        return name, [0, 0, 0, 0]
    ctx.folded.append(f"{pad.label} (into the window op after it)")
    return pad.source, list(pad.pads)


def _refuse_pads(label: str, pads: list[int], why: str):
    raise TrainnetError(f"{label}: pads begin {pads[:2]} and end {pads[2:]} (top, left / bottom, "
                        f"right) differ, and {why}")


def _window(ctx: Context, node, label: str, kernel: tuple, dilation=(1, 1)):
    """(source tensor, its (H, W), ONNX pads incl. a folded Pad's, stride) of a window op."""
    attrs = attributes(node)
    source, extra = _source(ctx, node.input[0])
    size = tuple(ctx.shape(source, label)[2:])
    if len(size) != 2:
        raise TrainnetError(f"{label}: input of shape {list(ctx.shape(source, label))}; "
                            "trainnet's windows are 2-D (N, C, H, W)")
    stride = _pair(attrs.get("strides"), "strides", label, 1)
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    pads = [a + b for a, b in zip(_pads(attrs, size, span, stride, label), extra)]
    if any(p < 0 for p in pads):
        raise TrainnetError(f"{label}: negative pads {pads} (a crop) have no trainnet form")
    return source, size, pads, stride, extra


def _spatial(params: dict, key: str, pair: tuple[int, int], default: int) -> None:
    if pair != (default, default):
        params[key] = [pair[0]] if pair[0] == pair[1] else list(pair)


@HANDLERS.register("Conv")
def conv(ctx: Context, node, label: str) -> None:
    weight = constant(ctx, node, label, 1, "weight")
    if weight.ndim != 4:
        raise TrainnetError(f"{label}: weight of shape {list(weight.shape)}; trainnet's "
                            "Convolution is 2-D")
    attrs = attributes(node)
    kernel = weight.shape[2:]
    dilation = _pair(attrs.get("dilations"), "dilations", label, 1)
    source, size, pads, stride, _ = _window(ctx, node, label, kernel, dilation)
    for h, k, d, s, b, e in zip(size, kernel, dilation, stride, pads[:2], pads[2:]):
        span = d * (k - 1) + 1
        if (h + 2 * b - span) // s != (h + b + e - span) // s:
            _refuse_pads(label, pads, "Caffe's symmetric pad gives another output size")
    params = {"num_output": int(weight.shape[0]), "kernel_size": [int(k) for k in kernel]}
    if kernel[0] == kernel[1]:
        params["kernel_size"] = [int(kernel[0])]
    _spatial(params, "stride", stride, 1)
    _spatial(params, "pad", tuple(pads[:2]), 0)
    _spatial(params, "dilation", dilation, 1)
    group = int(attrs.get("group", 1))
    if group != 1:
        params["group"] = group
    blobs = [weight]
    if len(node.input) > 2 and node.input[2]:
        blobs.append(constant(ctx, node, label, 2, "bias"))
    else:
        params["bias_term"] = False
    ctx.add_layer(ctx.layer_name(node), "Convolution", [ctx.bottom(source, label)],
                  [ctx.top(node.output[0])], params, blobs)


@HANDLERS.register("ConvTranspose")
def conv_transpose(ctx: Context, node, label: str) -> None:
    weight = constant(ctx, node, label, 1, "weight")
    if weight.ndim != 4:
        raise TrainnetError(f"{label}: weight of shape {list(weight.shape)}; trainnet's "
                            "Deconvolution is 2-D")
    if node.input[0] in ctx.pending_pads:
        ctx.bottom(node.input[0], label)  # refuses: a Pad before a transposed conv is no pad
    attrs = attributes(node)
    kernel, group = weight.shape[2:], int(attrs.get("group", 1))
    dilation = _pair(attrs.get("dilations"), "dilations", label, 1)
    stride = _pair(attrs.get("strides"), "strides", label, 1)
    extra = _pair(attrs.get("output_padding"), "output_padding", label, 0)
    size = ctx.shape(node.input[0], label)[2:]
    full = [s * (h - 1) + d * (k - 1) + 1 for s, h, d, k in zip(stride, size, dilation, kernel)]
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if "output_shape" in attrs or mode in ("SAME_UPPER", "SAME_LOWER"):
        out = [int(v) for v in attrs["output_shape"]][-2:] if "output_shape" in attrs else \
            [h * s for h, s in zip(size, stride)]
        total = [f + e - o for f, e, o in zip(full, extra, out)]
        upper = mode == "SAME_UPPER"
        pads = [t // 2 if upper else t - t // 2 for t in total] + \
               [t - t // 2 if upper else t // 2 for t in total]
    else:
        pads = [0, 0, 0, 0] if mode == "VALID" else [int(p) for p in attrs.get("pads", [0] * 4)]
    ends = [e - x for e, x in zip(pads[2:], extra)]  # output_padding extends the end
    if pads[:2] != ends or min(pads) < 0:
        raise TrainnetError(f"{label}: pads {pads} with output_padding {list(extra)} crop the "
                            "output unevenly; Caffe's Deconvolution crops both ends alike")
    params = {"num_output": int(weight.shape[1]) * group, "kernel_size": [int(k) for k in kernel]}
    _spatial(params, "stride", stride, 1)
    _spatial(params, "pad", tuple(pads[:2]), 0)
    _spatial(params, "dilation", dilation, 1)
    if group != 1:
        params["group"] = group
    blobs = [weight]
    if len(node.input) > 2 and node.input[2]:
        blobs.append(constant(ctx, node, label, 2, "bias"))
    else:
        params["bias_term"] = False
    ctx.add_layer(ctx.layer_name(node), "Deconvolution", [ctx.bottom(node.input[0], label)],
                  [ctx.top(node.output[0])], params, blobs)


@HANDLERS.register("Pad")
def pad(ctx: Context, node, label: str) -> None:
    """A zero Pad of H and W, left for the Conv or pooling that reads it to fold."""
    mode = attributes(node).get("mode", b"constant")
    pads = [int(p) for p in constant(ctx, node, label, 1, "pads").reshape(-1)]
    value = float(constant(ctx, node, label, 2, "constant_value", 0.0).reshape(-1)[0])
    readers = ctx.consumers.get(node.output[0], [])
    if mode not in (b"constant", "constant") or value != 0:
        raise TrainnetError(f"{label}: only a zero constant Pad folds into trainnet's layers")
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        raise TrainnetError(f"{label}: pads {pads}: only padding H and W of an NCHW tensor "
                            "folds")
    if len(readers) != 1 or readers[0].op_type not in ("Conv", "AveragePool", "MaxPool") \
            or readers[0].input[0] != node.output[0] or node.output[0] in ctx.outputs:
        raise TrainnetError(f"{label}: a Pad folds only into the one Conv, AveragePool or "
                            "MaxPool that reads it")
    ctx.bottom(node.input[0], label)
    ctx.pending_pads[node.output[0]] = PendingPad(node.input[0], (pads[2], pads[3], pads[6],
                                                                 pads[7]), label)
