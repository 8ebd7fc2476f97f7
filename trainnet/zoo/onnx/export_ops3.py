"""ONNX export handlers for the structural layers: Concat, Slice, Flatten, Reshape, Crop, Tile,
Softmax, ArgMax and Reduction.  Shape constants copy the batch axis (Reshape's 0) rather than
bake it in; a layer that works across the batch axis makes its top's axis 0 no batch."""

from __future__ import annotations

import numpy as np

from trainnet.zoo.onnx.export_ops import F32, register


def _axis(g, step, axis: int, blob: int = 0) -> int:
    """``axis`` made non-negative for bottom ``blob``; axis 0 marks the top as unbatched."""
    a = axis % len(g.shape(step.bottoms[blob]))
    if a == 0:
        g.across_batch = True
    return a


def _legacy(p, name: str) -> int:
    legacy = getattr(p, name)
    return p.axis if legacy is None else legacy


@register("Concat")
def concat(g, step):
    a = _axis(g, step, _legacy(step.layer.p, "concat_dim"))
    return [g.node("Concat", g.bottoms(step), g.top(step), step, axis=a)]


@register("Slice")
def slice_(g, step):
    a = _axis(g, step, _legacy(step.layer.p, "slice_dim"))
    tops = [g.top(step, i) for i in range(len(step.tops))]
    if len(tops) == 1:
        return [g.node("Identity", g.bottoms(step), tops[0], step)]
    return g.node("Split", g.bottoms(step) + [g.ints(step.layer.sizes, "split")], tops, step,
                  n_out=len(tops), axis=a)


@register("Flatten")
def flatten(g, step):
    shape, p = g.shape(step.bottoms[0]), step.layer.p
    n = len(shape)
    start, end = p.axis % n, p.end_axis % n
    if start == 0:
        g.across_batch = True
    target = [0] * start + [-1] + list(shape[end + 1:])
    return [g.node("Reshape", g.bottoms(step) + [g.ints(target, "shape")], g.top(step), step)]


@register("Reshape")
def reshape(g, step):
    """Caffe's dims (0 copies the bottom's axis at its place, -1 is inferred) are ONNX
    Reshape's with allowzero 0 once the axes outside axis..axis+num_axes are copied too."""
    shape, p = g.shape(step.bottoms[0]), step.layer.p
    n, dims = len(shape), list(p.shape.dim)
    start = p.axis if p.axis >= 0 else n + p.axis + 1
    end = n if p.num_axes == -1 else start + p.num_axes
    after = list(shape[end:])
    if start + len(dims) != end:  # the axes after the reshaped ones move: give their sizes
        target = [0] * start + dims + after
    else:
        target = [0] * start + dims + [0] * len(after)
    if target[0] != 0:
        g.across_batch = True
    return [g.node("Reshape", g.bottoms(step) + [g.ints(target, "shape")], g.top(step), step)]


@register("Crop")
def crop(g, step):
    window = step.layer.window
    a = _axis(g, step, step.layer.p.axis)
    starts = [s.start for s in window[a:]]
    ends = [s.stop for s in window[a:]]
    inputs = [g.bottoms(step)[0], g.ints(starts, "starts"), g.ints(ends, "ends"),
              g.ints(range(a, len(window)), "axes")]
    return [g.node("Slice", inputs, g.top(step), step)]


@register("Tile")
def tile(g, step):
    rank = len(g.shape(step.bottoms[0]))
    a = _axis(g, step, step.layer.p.axis)
    repeats = [step.layer.p.tiles if i == a else 1 for i in range(rank)]
    return [g.node("Tile", g.bottoms(step) + [g.ints(repeats, "repeats")], g.top(step), step)]


@register("Softmax")
def softmax(g, step):
    a = step.layer.p.axis % len(g.shape(step.bottoms[0]))
    return [g.node("Softmax", g.bottoms(step), g.top(step), step, axis=a)]


def _top_k(g, step, x: str, axis: int, dim: int) -> tuple[str, str]:
    """(values, indices as float) of the ``top_k`` largest of ``dim`` along ``axis``, ties to
    the largest index as trainnet (and Caffe) take them: TopK on the reversed axis takes the
    lowest."""
    k = step.layer.p.top_k
    flipped = g.node("Slice", [x, g.ints([-1], "starts"), g.ints([np.iinfo(np.int64).min], "ends"),
                               g.ints([axis], "axes"), g.ints([-1], "steps")], step=step)
    values, index = g.node("TopK", [flipped, g.ints([k], "k")], step=step, n_out=2, axis=axis,
                           largest=1, sorted=1)
    index = g.node("Sub", [g.ints([dim - 1], "last"), index], step=step)
    return values, g.node("Cast", [index], step=step, to=g.onnx.TensorProto.FLOAT)


@register("ArgMax")
def argmax(g, step):
    layer, x = step.layer, g.bottoms(step)[0]
    p = layer.p
    if p.axis is not None:
        a = _axis(g, step, p.axis)
        values, index = _top_k(g, step, x, a, g.shape(step.bottoms[0])[a])
        return [g.node("Identity", [values if p.out_max_val else index], g.top(step), step)]
    rows = g.node("Flatten", [x], step=step, axis=1)
    values, index = _top_k(g, step, rows, 1, step.layer.shape3[1])
    slots = [index] + ([values] if p.out_max_val else [])
    joined = g.node("Concat", [g.node("Unsqueeze", [s, g.ints([1], "axes")], step=step)
                               for s in slots], step=step, axis=1)
    top = g.shape(step.tops[0])
    return [g.node("Reshape", [joined, g.ints([0] + list(top[1:]), "shape")], g.top(step), step)]


@register("Reduction")
def reduction(g, step):
    layer, x = step.layer, g.bottoms(step)[0]
    op = layer.p.operation
    rank = len(g.shape(step.bottoms[0]))
    a = layer.p.axis % rank if rank else 0
    if a == 0:
        g.across_batch = True
    axes = list(range(a, rank))
    if op == "MEAN":
        y = g.node("ReduceMean", [x], step=step, axes=axes, keepdims=0) if axes else x
        coeff = F32(layer.p.coeff)
    else:
        terms = {"SUM": x, "ASUM": None, "SUMSQ": None}[op]
        if op == "ASUM":
            terms = g.node("Abs", [x], step=step)
        elif op == "SUMSQ":
            terms = g.node("Mul", [x, x], step=step)
        y = g.node("ReduceSum", [terms, g.ints(axes, "axes")], step=step, keepdims=0) \
            if axes else terms
        coeff = layer.coeff
    if coeff != 1:
        y = g.node("Mul", [y, g.const(F32(coeff), "coeff")], step=step)
    return [g.node("Identity", [y], g.top(step), step)]
