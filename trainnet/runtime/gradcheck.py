"""The one gradient checker: central differences in float64 on the CPU, for users and for the
project's own layer tests (``tests/layer_check.py``) alike.

``check_gradient(layer, bottoms)`` takes a built trainnet layer or a fresh instance of a user's
Python layer class (``trainnet.caffe.Layer``), which it wraps as the ``Python`` layer type does:
its ``setup`` and ``reshape`` run first, its blobs become the parameters checked.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from trainnet.layers.base import NO_PLAN, Layer, StepContext, StepIO
from trainnet.layers.fillers import fill
from trainnet.layers.python import Python, PythonLayer
from trainnet.runtime.device import CPU


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
    """Fresh arrays for one step of ``layer`` outside a plan; ``ctx`` stands for what a plan
    would decide for the step (forward-only, a fused ReLU)."""
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


def _numeric(objective, x: np.ndarray, i: int, eps: float) -> float:
    flat = x.reshape(-1)
    orig = flat[i]
    flat[i] = orig + eps
    plus = objective()
    flat[i] = orig - eps
    minus = objective()
    flat[i] = orig
    return (plus - minus) / (2 * eps)


def check_gradient(layer, bottoms: list[np.ndarray], *, seed: int = 0, eps: float = 1e-4,
                   rtol: float = 1e-4, atol: float = 1e-6, check_bottoms: Optional[list[bool]] = None,
                   kink: Optional[float] = None, kink_range: float = -1.0,
                   top_weights: Optional[list[np.ndarray]] = None, ctx: StepContext = NO_PLAN,
                   num_tops: int = 1) -> None:
    """Assert that backward matches central differences of d(sum_i w_i . top_i)/d(bottom, params).

    ``layer`` is a built layer or a fresh instance of a Python layer class (``num_tops`` tops).
    Everything runs in float64 on the CPU, so a Python layer should compute in its arrays' dtype.
    The random top weights make every output matter; parameters start from their initial values
    plus noise; coordinates within ``kink_range`` of ``kink`` (ReLU's 0) are skipped, as in
    Caffe's checker; ``check_bottoms[i] = False`` leaves bottom i out (labels).  Raises
    AssertionError at the first coordinate out of tolerance. ::

        from trainnet import caffe, check_gradient

        class Scale(caffe.Layer):
            def setup(self, bottom, top):
                self.blobs.add_blob(1).data[...] = float(self.param_str)
            def reshape(self, bottom, top):
                top[0].reshape(*bottom[0].shape)
            def forward(self, bottom, top):
                top[0].data[...] = self.blobs[0].data * bottom[0].data
            def backward(self, top, propagate_down, bottom):
                bottom[0].diff[...] = self.blobs[0].data * top[0].diff
                self.blobs[0].diff[...] = (top[0].diff * bottom[0].data).sum()

        check_gradient(Scale(param_str="2.5"), [np.random.randn(2, 3)])
    """
    bottoms = [np.array(b, dtype=np.float64) for b in bottoms]
    if isinstance(layer, PythonLayer):
        layer = Python.around(layer, [b.shape for b in bottoms], num_tops)
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
    checked = _compare(layer.type, objective, list(io.bottom) + list(io.params), analytic,
                       len(bottoms), eps, rtol, atol, kink, kink_range)
    assert checked > 0, "the gradient check compared nothing"


def _compare(type_name: str, objective, targets: list[np.ndarray], analytic: list, n_bottoms: int,
             eps: float, rtol: float, atol: float, kink: Optional[float], kink_range: float) -> int:
    """Compare each analytic gradient with central differences; returns how many were compared."""
    checked = 0
    for k, (x, grad) in enumerate(zip(targets, analytic)):
        if grad is None:
            continue
        is_bottom = k < n_bottoms
        for i in range(x.size):
            if is_bottom and kink is not None and abs(x.reshape(-1)[i] - kink) <= kink_range:
                continue
            numeric = _numeric(objective, x, i, eps)
            a = grad.reshape(-1)[i]
            assert abs(a - numeric) <= atol + rtol * max(abs(a), abs(numeric), 1.0), (
                f"{type_name}: gradient of {'bottom' if is_bottom else 'param'} "
                f"{k if is_bottom else k - n_bottoms} at {np.unravel_index(i, x.shape)}: "
                f"analytic {a:.8g} vs numeric {numeric:.8g}")
            checked += 1
    return checked
