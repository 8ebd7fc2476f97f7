"""The one gradient checker and layer-test helpers every layer test uses.

``build(type, params, bottom_shapes)`` makes a layer from its YAML-style fields;
``run_forward`` binds fresh arrays and runs it; ``check_gradients`` compares backward with
central differences in float64 on the CPU, for every bottom that takes a gradient and every
parameter blob.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from trainnet.layers.base import NO_PLAN, Layer, StepContext, StepIO, layer_class
from trainnet.layers.fillers import fill
from trainnet.runtime.device import CPU


def build(type_name: str, params: Optional[dict] = None, bottom_shapes: Sequence = (),
          phase: str = "TRAIN", name: str = "layer") -> Layer:
    cls = layer_class(type_name)
    return cls(name, cls.Params.model_validate(params or {}), phase, [tuple(s) for s in bottom_shapes])


def step_blobs(layer: Layer, ctx: StepContext = NO_PLAN) -> list:
    """The parameter blobs a step of ``layer`` binds: its own, then its folded layers' (as
    ``Step.param_blobs``)."""
    return layer.param_blobs() + [b for f in ctx.folded for b in f.param_blobs()]


def make_params(layer: Layer, seed: int = 0, dtype=np.float64,
                ctx: StepContext = NO_PLAN) -> list[np.ndarray]:
    """Parameters drawn from their fillers, then perturbed so that constant fillers test too."""
    rng = np.random.default_rng(seed)
    out = []
    for blob in step_blobs(layer, ctx):
        a = np.empty(blob.shape, dtype=dtype)
        fill(a, blob.filler, rng)
        a += rng.normal(0, 0.1, size=a.shape)
        out.append(a)
    return out


def make_io(layer: Layer, bottoms: list[np.ndarray], params: Optional[list[np.ndarray]] = None,
            propagate_down: Optional[list[bool]] = None, seed: int = 0,
            ctx: StepContext = NO_PLAN) -> StepIO:
    """``ctx`` stands for what a plan would decide for the step (forward-only, a fused ReLU)."""
    dtype = bottoms[0].dtype if bottoms else np.float64
    params = make_params(layer, seed, dtype, ctx) if params is None else params
    if propagate_down is None:
        propagate_down = [True] * len(bottoms)
    bufs = {k: np.zeros(b.shape, dtype=dtype if b.dtype == np.float32 else b.dtype)
            for k, b in layer.buffers(ctx).items()}
    return StepIO(
        bottom=list(bottoms),
        top=[np.zeros(s, dtype=dtype) for s in layer.top_shapes],
        bottom_diff=[np.zeros_like(b) if p else None for b, p in zip(bottoms, propagate_down)],
        top_diff=[np.zeros(s, dtype=dtype) for s in layer.top_shapes],
        params=params,
        param_diff=[np.zeros_like(p) for p in params],
        buf=bufs,
        state=layer.make_state(np.random.default_rng(seed)),
        rng=np.random.default_rng(seed),
        ctx=ctx,
    )


def run_forward(layer: Layer, bottoms: list[np.ndarray], **kw) -> StepIO:
    io = make_io(layer, bottoms, **kw)
    layer.forward(io, CPU)
    return io


def check_gradients(layer: Layer, bottoms: list[np.ndarray], *, seed: int = 0, eps: float = 1e-4,
                    rtol: float = 1e-4, atol: float = 1e-6, check_bottoms: Optional[list[bool]] = None,
                    kink: Optional[float] = None, kink_range: float = -1.0,
                    top_weights: Optional[list[np.ndarray]] = None, ctx: StepContext = NO_PLAN) -> None:
    """Central-difference check of d(sum_i w_i . top_i)/d(bottom, params) in float64.

    Coordinates within ``kink_range`` of ``kink`` (ReLU's 0) are skipped, as in Caffe's
    checker; the random top weights make every output matter.
    """
    bottoms = [np.array(b, dtype=np.float64) for b in bottoms]
    if check_bottoms is None:
        check_bottoms = [True] * len(bottoms)
    io = make_io(layer, bottoms, propagate_down=check_bottoms, seed=seed, ctx=ctx)
    rng = np.random.default_rng(seed + 1)
    weights = top_weights or [rng.normal(size=s) for s in layer.top_shapes]

    def objective() -> float:
        io.rng = np.random.default_rng(seed)  # stochastic layers draw the same numbers each time
        layer.forward(io, CPU)
        return float(sum(np.sum(w * t) for w, t in zip(weights, io.top)))

    objective()
    for d, w in zip(io.top_diff, weights):
        d[...] = w
    io.rng = np.random.default_rng(seed)
    layer.backward(io, CPU)
    analytic = [d.copy() if d is not None else None for d in io.bottom_diff] + \
               [d.copy() for d in io.param_diff]
    targets = list(io.bottom) + list(io.params)
    checked = 0
    for k, (x, grad) in enumerate(zip(targets, analytic)):
        if grad is None:
            continue
        flat = x.reshape(-1)
        for i in range(flat.size):
            if k < len(bottoms) and kink is not None and abs(flat[i] - kink) <= kink_range:
                continue
            orig = flat[i]
            flat[i] = orig + eps
            plus = objective()
            flat[i] = orig - eps
            minus = objective()
            flat[i] = orig
            numeric = (plus - minus) / (2 * eps)
            a = grad.reshape(-1)[i]
            scale = max(abs(a), abs(numeric), 1.0)
            assert abs(a - numeric) <= atol + rtol * scale, (
                f"{layer.type}: gradient of {'bottom' if k < len(bottoms) else 'param'} "
                f"{k if k < len(bottoms) else k - len(bottoms)} at {np.unravel_index(i, x.shape)}: "
                f"analytic {a:.8g} vs numeric {numeric:.8g}")
            checked += 1
    assert checked > 0, "the gradient check compared nothing"
