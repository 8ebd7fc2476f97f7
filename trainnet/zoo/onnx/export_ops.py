"""ONNX export handlers, one per Caffe layer type, in a registry keyed by the exact type string.

A handler takes the graph being built (``export.Graph``) and a compiled step, appends the
nodes that compute the layer exactly as trainnet does, and returns the value names of the
step's tops.  This module holds the registry and the element-wise layers; ``export_ops2`` the
layers with weights and windows, ``export_ops3`` the structural ones.
"""

from __future__ import annotations

import numpy as np

from trainnet.registry import Registry

HANDLERS = Registry("ONNX export handler")
register = HANDLERS.register
F32 = np.float32


def handler(g, step, handlers: Registry = HANDLERS):
    """The handler of ``step``'s type, or one error naming the layer (file and line too)."""
    if step.type not in handlers.entries:
        raise g.error(step, f"type {step.type} has no exact ONNX form, so the net cannot be "
                      f"exported (types with one: {', '.join(handlers.names())})")
    return handlers[step.type]


def unary(op: str, **attrs):
    """A handler for a layer that is one ONNX op on its bottom."""
    def export(g, step):
        return [g.node(op, g.bottoms(step), g.top(step), step, **attrs)]
    return export


for _type, _op in (("Sigmoid", "Sigmoid"), ("TanH", "Tanh"), ("AbsVal", "Abs"),
                   ("BNLL", "Softplus"), ("Dropout", "Identity")):
    register(_type)(unary(_op))


@register("ReLU")
def relu(g, step):
    slope = step.layer.p.negative_slope
    if slope == 0:
        return [g.node("Relu", g.bottoms(step), g.top(step), step)]
    return [g.node("LeakyRelu", g.bottoms(step), g.top(step), step, alpha=float(slope))]


@register("ELU")
def elu(g, step):
    return [g.node("Elu", g.bottoms(step), g.top(step), step, alpha=float(step.layer.p.alpha))]


@register("PReLU")
def prelu(g, step):
    layer = step.layer
    rank = len(g.shape(step.bottoms[0]))
    shape = (1,) if layer.p.channel_shared else (layer.channels,) + (1,) * (rank - 2)
    return [g.node("PRelu", g.bottoms(step) + [g.param(step, 0, shape)], g.top(step), step)]


@register("Clip")
def clip(g, step):
    lo, hi = g.const(step.layer.lo, "min"), g.const(step.layer.hi, "max")
    return [g.node("Clip", g.bottoms(step) + [lo, hi], g.top(step), step)]


@register("Swish")
def swish(g, step):
    x = g.bottoms(step)[0]
    beta = F32(step.layer.p.beta)
    scaled = x if beta == 1 else g.node("Mul", [x, g.const(beta, "beta")], step=step)
    s = g.node("Sigmoid", [scaled], step=step)
    return [g.node("Mul", [x, s], g.top(step), step)]


@register("Threshold")
def threshold(g, step):
    above = g.node("Greater", g.bottoms(step) + [g.const(F32(step.layer.p.threshold), "t")],
                   step=step)
    return [g.node("Cast", [above], g.top(step), step, to=g.onnx.TensorProto.FLOAT)]


def affine(g, step, x: str, scale, shift, out=None) -> str:
    """``x * scale + shift`` in float32, skipping a scale of 1 and a shift of 0."""
    scale, shift = F32(scale), F32(shift)
    if scale != 1:
        x = g.node("Mul", [x, g.const(scale, "scale")], out if shift == 0 else None, step)
    if shift != 0:
        x = g.node("Add", [x, g.const(shift, "shift")], out, step)
    if out is not None and x != out:
        x = g.node("Identity", [x], out, step)
    return x


@register("Power")
def power(g, step):
    p, x = step.layer.p, g.bottoms(step)[0]
    if step.layer.constant:  # the top ignores the bottom: a constant of its shape
        shape = g.node("Shape", [x], step=step)
        value = g.onnx.numpy_helper.from_array(np.array([step.layer._constant()], F32))
        return [g.node("ConstantOfShape", [shape], g.top(step), step, value=value)]
    if p.power == 1:
        return [affine(g, step, x, p.scale, p.shift, g.top(step))]
    base = affine(g, step, x, p.scale, p.shift)
    return [g.node("Pow", [base, g.const(F32(p.power), "power")], g.top(step), step)]


@register("Exp")
def exp(g, step):
    layer = step.layer
    inner = affine(g, step, g.bottoms(step)[0], layer.inner, 0)
    return [affine(g, step, g.node("Exp", [inner], step=step), layer.outer, 0, g.top(step))]


@register("Log")
def log(g, step):
    layer, p = step.layer, step.layer.p
    inner = affine(g, step, g.bottoms(step)[0], p.scale, p.shift)
    return [affine(g, step, g.node("Log", [inner], step=step), layer.base_scale, 0, g.top(step))]


@register("Silence")
def silence(g, step):
    """Nothing: the blobs it reads are not the model's outputs."""
    return []


@register("Split")
def split(g, step):
    x = g.bottoms(step)[0]
    return [g.node("Identity", [x], g.top(step, i), step) for i in range(len(step.tops))]


@register("Eltwise")
def eltwise(g, step):
    layer, xs = step.layer, g.bottoms(step)
    op = layer.p.operation
    if op == "MAX":
        return [g.node("Max", xs, g.top(step), step)]
    if op == "PROD":
        acc = xs[0]
        for i, x in enumerate(xs[1:], 1):
            acc = g.node("Mul", [acc, x], g.top(step) if i == len(xs) - 1 else None, step)
        return [acc]
    terms = [x if F32(c) == 1 else g.node("Mul", [x, g.const(F32(c), "coeff")], step=step)
             for x, c in zip(xs, layer.coeffs)]
    acc = terms[0]
    for i, t in enumerate(terms[1:], 1):  # trainnet's order: ((t0 + t1) + t2) ...
        acc = g.node("Add", [acc, t], g.top(step) if i == len(terms) - 1 else None, step)
    if len(terms) == 1:
        acc = g.node("Identity", [acc], g.top(step), step)
    return [acc]


from trainnet.zoo.onnx import export_ops2, export_ops3  # noqa: E402  (they register theirs)

MODULES = (export_ops2, export_ops3)
