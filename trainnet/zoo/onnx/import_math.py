"""Import handlers for ONNX's arithmetic and fully connected ops: Add, Sub, Mul, Div between two
activations (Eltwise) or with a constant (Power for one value, else Bias/Scale holding it), Gemm
and MatMul (+ Add of a constant bias, folded) as InnerProduct."""

from __future__ import annotations

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.zoo.onnx.import_context import HANDLERS, Context, attributes, scalar
from trainnet.zoo.onnx.import_ops import constant, one_layer


def _placed(shape: tuple, value: np.ndarray, label: str,
            what: str = "constant") -> tuple[int, int, np.ndarray]:
    """(axis, num_axes, blob) placing a ``what`` that broadcasts over ``shape`` as trainnet's
    Scale/Bias do: its dimensions other than 1 form one run of the input's own dimensions."""
    full = (1,) * (len(shape) - value.ndim) + value.shape
    kept = [i for i, c in enumerate(full) if c != 1]
    if value.ndim > len(shape) or not kept:
        raise TrainnetError(f"{label}: {what} of shape {list(value.shape)} does not broadcast "
                            f"onto a run of the input's axes {list(shape)}")
    if any(c not in (1, s) for c, s in zip(full, shape)):
        raise TrainnetError(f"{label}: {what} of shape {list(value.shape)} would enlarge the "
                            f"input {list(shape)}")
    axis, end = kept[0], kept[-1] + 1
    if any(full[i] != shape[i] for i in range(axis, end)):
        raise TrainnetError(f"{label}: {what} of shape {list(value.shape)} broadcasts inside "
                            f"its span of the input {list(shape)}; trainnet's Scale and Bias "
                            "cannot place it")
    return axis, end - axis, value.reshape(shape[axis:end])


def _with_constant(ctx: Context, node, label: str, x: str, value: np.ndarray, multiply: bool):
    """x + value or x * value: Power for one value, else Bias or Scale holding the constant."""
    value = np.asarray(value, np.float64)
    shape = ctx.shape(x, label)
    bottom, top = ctx.bottom(x, label), ctx.top(node.output[0])
    if value.size == 1 and value.ndim <= len(shape):
        params = {"scale" if multiply else "shift": scalar(value)}
        ctx.add_layer(ctx.layer_name(node), "Power", [bottom], [top], params)
        return
    axis, num_axes, blob = _placed(shape, value, label)
    params = {} if (axis, num_axes) == (1, 1) else {"axis": axis, "num_axes": num_axes}
    ctx.add_layer(ctx.layer_name(node), "Scale" if multiply else "Bias", [bottom], [top], params,
                  [blob])


def _broadcast(ctx: Context, node, label: str, op: str) -> None:
    """Two activations of different shapes, the second broadcasting over the first's trailing
    axes (a squeeze-and-excitation gate): the second reshaped to its run of the first's axes,
    then Scale or Bias with two bottoms."""
    a, b = node.input[:2]
    if op not in ("Add", "Mul"):
        raise TrainnetError(f"{label}: inputs of shapes {list(ctx.shape(a, label))} and "
                            f"{list(ctx.shape(b, label))}; trainnet's Eltwise needs equal shapes")
    if np.prod(ctx.shape(b, label)) > np.prod(ctx.shape(a, label)):
        a, b = b, a
    shape_a, shape_b = ctx.shape(a, label), ctx.shape(b, label)
    axis, num_axes, _ = _placed(shape_a, np.zeros(shape_b), label, "input")
    end = axis + num_axes
    while axis > 0 and len(shape_b) == len(shape_a) and shape_b[axis - 1] == shape_a[axis - 1]:
        axis -= 1  # the batch (of 1 here) stays an axis of the gate, so that it can be edited
    dims = list(shape_a[axis:end])
    gate = ctx.blob(f"{b}_placed")
    ctx.add_layer(ctx.layer_name(node, "_reshape"), "Reshape", [ctx.bottom(b, label)], [gate],
                  {"shape": {"dim": [0, *dims[1:]] if axis == 0 else dims}})
    ctx.add_layer(ctx.layer_name(node), "Scale" if op == "Mul" else "Bias",
                  [ctx.bottom(a, label), gate], [ctx.top(node.output[0])],
                  {"axis": axis} if axis != 1 else {})


def _arith(op: str):
    def handler(ctx: Context, node, label: str) -> None:
        a, b = node.input[:2]
        ca, cb = ctx.const(a), ctx.const(b)
        if ca is None and cb is None:
            if ctx.shape(a, label) != ctx.shape(b, label):
                _broadcast(ctx, node, label, op)
                return
            if op == "Div":
                raise TrainnetError(f"{label}: division of two activations has no trainnet "
                                    "layer")
            params = {"operation": "PROD"} if op == "Mul" else \
                {"coeff": [1.0, -1.0]} if op == "Sub" else {}
            ctx.add_layer(ctx.layer_name(node), "Eltwise", [ctx.bottom(a, label),
                          ctx.bottom(b, label)], [ctx.top(node.output[0])], params)
        elif cb is not None:
            value = {"Add": cb, "Mul": cb, "Sub": -np.asarray(cb, np.float64),
                     "Div": 1 / np.asarray(cb, np.float64)}[op]
            _with_constant(ctx, node, label, a, value, op in ("Mul", "Div"))
        elif op in ("Add", "Mul"):
            _with_constant(ctx, node, label, b, ca, op == "Mul")
        elif op == "Sub" and ca.size == 1:
            ctx.add_layer(ctx.layer_name(node), "Power", [ctx.bottom(b, label)],
                          [ctx.top(node.output[0])],
                          {"scale": -1.0, "shift": scalar(ca)})
        else:
            raise TrainnetError(f"{label}: a constant of shape {list(ca.shape)} {op} an "
                                "activation has no trainnet layer")
    return handler


for _op in ("Add", "Sub", "Mul", "Div"):
    HANDLERS.register(_op)(_arith(_op))


def _bias(value: np.ndarray, n: int) -> np.ndarray | None:
    """A constant as a bias of ``n`` outputs (one value, or n along its last axis), or None."""
    value = np.asarray(value)
    if value.size == 1:
        return np.full(n, float(value.reshape(())))
    if value.size == n and value.shape[-1] == n:
        return value.reshape(n)
    return None


@HANDLERS.register("Gemm")
def gemm(ctx: Context, node, label: str) -> None:
    """alpha A B' + beta C with A the activation: InnerProduct with alpha and beta folded into
    the weights (transB 1 is Caffe's own layout; transB 0 is its ``transpose``)."""
    attrs = attributes(node)
    if attrs.get("transA", 0):
        raise TrainnetError(f"{label}: transA=1 (the activation transposed) has no trainnet form")
    weight = constant(ctx, node, label, 1, "weight B") * float(attrs.get("alpha", 1.0))
    transpose = not attrs.get("transB", 0)
    n = weight.shape[1] if transpose else weight.shape[0]
    blobs = [weight]
    if len(node.input) > 2 and node.input[2]:
        bias = _bias(constant(ctx, node, label, 2, "bias C"), n)
        if bias is None:
            raise TrainnetError(f"{label}: bias C of shape {list(ctx.const(node.input[2]).shape)}"
                                f" is not one value per output ({n})")
        blobs.append(bias * float(attrs.get("beta", 1.0)))
    params = {"num_output": int(n)}
    if transpose:
        params["transpose"] = True
    if len(blobs) == 1:
        params["bias_term"] = False
    one_layer(ctx, node, label, "InnerProduct", params, blobs)


def _bias_add(ctx: Context, node, n: int):
    """(the Add node, its bias) when the MatMul's output only feeds an Add of a constant."""
    out = node.output[0]
    readers = ctx.consumers.get(out, [])
    if out in ctx.outputs or len(readers) != 1 or readers[0].op_type != "Add":
        return None, None
    add = readers[0]
    other = add.input[1] if add.input[0] == out else add.input[0]
    value = ctx.const(other)
    bias = None if value is None else _bias(value, n)
    return (add, bias) if bias is not None else (None, None)


@HANDLERS.register("MatMul")
def matmul(ctx: Context, node, label: str) -> None:
    """X W with W a constant (K, N): InnerProduct over X's last axis, W as its ``transpose``
    layout; an Add of a constant bias right after it becomes the bias."""
    weight = constant(ctx, node, label, 1, "weight")
    if weight.ndim != 2:
        raise TrainnetError(f"{label}: weight of shape {list(weight.shape)}; trainnet's "
                            "InnerProduct takes a 2-D weight")
    rank = len(ctx.shape(node.input[0], label))
    n = weight.shape[1]
    add, bias = _bias_add(ctx, node, n)
    params = {"num_output": int(n), "transpose": True}
    if rank != 2:
        params["axis"] = rank - 1
    bottom = ctx.bottom(node.input[0], label)
    if add is None:
        params["bias_term"] = False
        top, blobs = ctx.top(node.output[0]), [weight]
    else:
        ctx.skip.add(id(add))
        ctx.folded.append(f"{add.name or 'an Add'} (bias of {node.name or 'a MatMul'})")
        top, blobs = ctx.top(add.output[0]), [weight, bias]
    ctx.add_layer(ctx.layer_name(node), "InnerProduct", [bottom], [top], params, blobs)
