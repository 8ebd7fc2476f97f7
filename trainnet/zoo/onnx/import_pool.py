"""Import handlers for ONNX's pooling: MaxPool and AveragePool onto Caffe's Pooling (the round
mode that gives ONNX's output size, windows placed alike; see import_conv for pads), and the
global poolings.

Caffe's AVE divides by the window clipped to H + pad; ONNX by the window clipped to the padded
extent (count_include_pad=1) or to the input (0).  Where the two differ at some output position
the Pooling is followed by a Scale with a fixed (Ho, Wo) blob of Caffe's divisor over ONNX's.
"""

from __future__ import annotations

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.layers.pool_geometry import pooled_size
from trainnet.zoo.onnx.import_context import HANDLERS, Context, attributes
from trainnet.zoo.onnx.import_conv import _pair, _window


def onnx_pooled(h: int, k: int, s: int, begin: int, end: int, ceil: bool) -> int:
    """ONNX's output size (ceil mode drops a last window starting past the input and its begin
    pad, as ONNX Runtime does)."""
    span = h + begin + end - k
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= h + begin:
        out -= 1
    return out


def _round_mode(label: str, size, kernel, stride, pads, ceil: bool) -> tuple[str, list[int]]:
    """Caffe's round mode giving ONNX's output size with Caffe's pad = ONNX's begin pad."""
    want = [onnx_pooled(h, k, s, b, e, ceil)
            for h, k, s, b, e in zip(size, kernel, stride, pads[:2], pads[2:])]
    padded = pads[0] > 0 or pads[1] > 0
    got = {}
    for mode in (("CEIL", "FLOOR") if ceil else ("FLOOR", "CEIL")):
        got[mode] = [pooled_size(h, k, b, s, mode == "CEIL", padded)
                     for h, k, s, b in zip(size, kernel, stride, pads[:2])]
        if got[mode] == want:
            return mode, want
    raise TrainnetError(f"{label}: pads {pads} (top, left, bottom, right) with ceil_mode "
                        f"{int(ceil)} give the output {want}; Caffe's symmetric pad "
                        f"{pads[:2]} gives {got['FLOOR']} (FLOOR) or {got['CEIL']} (CEIL)")


def _divisors(h: int, k: int, s: int, begin: int, end: int, out: int, include_pad: bool,
              label: str) -> tuple[np.ndarray, np.ndarray]:
    """Per output position along one axis: (Caffe's divisor, ONNX's divisor)."""
    start = np.arange(out) * s - begin
    if np.any(start >= h) or np.any(start + k <= 0):
        raise TrainnetError(f"{label}: a window lies wholly in the padding")
    caffe = np.minimum(start + k, h + begin) - start
    if include_pad:
        onnx = np.minimum(start + k, h + end) - start
    else:
        onnx = np.minimum(start + k, h) - np.maximum(start, 0)
    return caffe.astype(np.float64), onnx.astype(np.float64)


def _pool(ctx: Context, node, label: str, pool: str) -> None:
    attrs = attributes(node)
    if len(node.output) > 1 and node.output[1] and ctx.consumers.get(node.output[1]):
        raise TrainnetError(f"{label}: its Indices output is read; trainnet's Pooling has none")
    kernel = _pair(attrs.get("kernel_shape"), "kernel_shape", label, 1)
    if _pair(attrs.get("dilations"), "dilations", label, 1) != (1, 1):
        raise TrainnetError(f"{label}: dilated pooling has no trainnet form")
    source, size, pads, stride, extra = _window(ctx, node, label, kernel)
    include = bool(attrs.get("count_include_pad", 0))
    if any(extra):
        own = [p - e for p, e in zip(pads, extra)]
        if pool == "MAX" and source not in ctx.nonneg:
            raise TrainnetError(f"{label}: a zero Pad before MaxPool folds only when its input "
                                "is known >= 0 (after a Relu, Clip or Sigmoid)")
        if pool == "AVE" and any(own) and not include:
            raise TrainnetError(f"{label}: a zero Pad before an AveragePool with its own pads "
                                "folds only with count_include_pad=1")
        include = True  # the Pad's zeros are cells ONNX counts
    if any(b >= k for b, k in zip(pads[:2], kernel)):
        raise TrainnetError(f"{label}: begin pads {pads[:2]} reach the kernel {list(kernel)}; "
                            "Caffe's pad must be smaller")
    mode, out = _round_mode(label, size, kernel, stride, pads, bool(attrs.get("ceil_mode", 0)))
    axes = [_divisors(h, k, s, b, e, o, include, label)
            for h, k, s, b, e, o in zip(size, kernel, stride, pads[:2], pads[2:], out)]
    params = {"pool": pool, "kernel_h": kernel[0], "kernel_w": kernel[1]} \
        if kernel[0] != kernel[1] else {"pool": pool, "kernel_size": kernel[0]}
    params.update({"stride": stride[0]} if stride[0] == stride[1] else
                  {"stride_h": stride[0], "stride_w": stride[1]})
    if pads[0] or pads[1]:
        params.update({"pad": pads[0]} if pads[0] == pads[1] else
                      {"pad_h": pads[0], "pad_w": pads[1]})
    params["round_mode"] = mode
    correction = np.outer(axes[0][0] / axes[0][1], axes[1][0] / axes[1][1])
    bottom, top = ctx.bottom(source, label), ctx.top(node.output[0])
    if pool == "MAX" or np.all(correction == 1):
        ctx.add_layer(ctx.layer_name(node), "Pooling", [bottom], [top], params)
    else:
        summed = ctx.blob(f"{node.output[0]}_caffe")
        ctx.add_layer(ctx.layer_name(node), "Pooling", [bottom], [summed], params)
        ctx.add_layer(ctx.layer_name(node, "_divisor"), "Scale", [summed], [top],
                      {"axis": 2, "num_axes": 2}, [correction], fixed=True)
    if source in ctx.nonneg:
        ctx.nonneg.add(node.output[0])


@HANDLERS.register("MaxPool")
def max_pool(ctx: Context, node, label: str) -> None:
    _pool(ctx, node, label, "MAX")


@HANDLERS.register("AveragePool")
def average_pool(ctx: Context, node, label: str) -> None:
    _pool(ctx, node, label, "AVE")


def _global(pool: str):
    def handler(ctx: Context, node, label: str) -> None:
        if len(ctx.shape(node.input[0], label)) != 4:
            raise TrainnetError(f"{label}: trainnet's global pooling takes an NCHW input")
        bottom, top = ctx.bottom(node.input[0], label), ctx.top(node.output[0])
        ctx.add_layer(ctx.layer_name(node), "Pooling", [bottom], [top],
                      {"pool": pool, "global_pooling": True})
        if node.input[0] in ctx.nonneg:
            ctx.nonneg.add(node.output[0])
    return handler


HANDLERS.register("GlobalAveragePool")(_global("AVE"))
HANDLERS.register("GlobalMaxPool")(_global("MAX"))
