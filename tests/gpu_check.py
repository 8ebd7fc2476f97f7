"""CPU/GPU parity for layers, and the GPU devices tests run on.

``gpu_device`` (a fixture in conftest) is parametrized over the emulated backend (the GPU
code path compiled for the host: runs everywhere a C++ compiler is) and a real CUDA GPU
(skipped where there is none).  ``check_parity`` runs a layer's CPU pass and its GPU pass on
the same float32 inputs and compares forward tops and backward gradients with a relative
tolerance; every GPU output is poisoned with NaN first, so an element the GPU pass does not
write fails the test.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import numpy as np

from layer_check import make_io
from trainnet.layers.base import NO_PLAN, Layer, StepContext, StepIO
from trainnet.runtime.device import CPU


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if np.isnan(got).any():
        return float("inf")
    scale = max(np.linalg.norm(want), 1e-30)
    return float(np.linalg.norm(got - want) / scale) if got.size else 0.0


def _poisoned(device, host: np.ndarray):
    arr = device.zeros(host.shape, host.dtype)
    if host.dtype == np.float32:
        device.fill(arr, np.nan)
    return arr


def to_device(device, host: np.ndarray):
    arr = device.zeros(host.shape, host.dtype)
    device.upload(arr, host)
    return arr


def gpu_io(layer: Layer, device, cpu_io: StepIO, seed: int) -> StepIO:
    """``cpu_io``'s inputs on ``device``; outputs, diffs and scratch poisoned.  The scratch is
    what the layer declares for its GPU pass (``cpu_io``'s context on a GPU)."""
    bufs = {}
    ctx = replace(cpu_io.ctx, gpu=True)
    for k, b in layer.buffers(ctx).items():
        host = np.zeros(b.shape, b.dtype)
        bufs[k] = to_device(device, host) if b.keep or b.dtype != np.float32 else _poisoned(device, host)
    return StepIO(
        bottom=[to_device(device, b) for b in cpu_io.bottom],
        top=[_poisoned(device, t) for t in cpu_io.top],
        bottom_diff=[None if d is None else _poisoned(device, d) for d in cpu_io.bottom_diff],
        top_diff=[to_device(device, d) for d in cpu_io.top_diff],
        params=[to_device(device, p) for p in cpu_io.params],
        param_diff=[None if d is None else _poisoned(device, d) for d in cpu_io.param_diff],
        buf=bufs, state=layer.make_state(np.random.default_rng(seed), device),
        rng=np.random.default_rng(seed), gpu=device.backend, ctx=ctx)


def check_parity(layer: Layer, bottoms: Sequence[np.ndarray], device, *, seed: int = 0,
                 rtol: float = 1e-4, propagate_down: Optional[list[bool]] = None,
                 backward: bool = True, top_diffs: Optional[list[np.ndarray]] = None,
                 passes: int = 1, ctx: StepContext = NO_PLAN) -> tuple[StepIO, StepIO]:
    """Forward (and backward) on the CPU and on ``device``; assert they agree.

    ``passes`` > 1 runs forward/backward repeatedly (a layer with per-pass state, Dropout).
    Returns the two StepIOs for further checks.
    """
    bottoms = [np.asarray(b, np.float32) if np.asarray(b).dtype.kind == "f" else np.asarray(b)
               for b in bottoms]
    cpu = make_io(layer, bottoms, propagate_down=propagate_down, seed=seed, ctx=ctx)
    cpu.params = [p.astype(np.float32) for p in cpu.params]
    cpu.param_diff = [np.zeros_like(p) for p in cpu.params]
    cpu.state = layer.make_state(np.random.default_rng(seed), CPU)
    rng = np.random.default_rng(seed + 7)
    for i, t in enumerate(cpu.top_diff):
        t[...] = top_diffs[i] if top_diffs else rng.normal(size=t.shape)
    gpu = gpu_io(layer, device, cpu, seed)
    for _ in range(passes):
        layer.forward(cpu, CPU)
        layer.forward(gpu, device)
        _compare("top", cpu.top, gpu.top, device, rtol, layer)
        if backward and layer.has_backward:
            layer.backward(cpu, CPU)
            layer.backward(gpu, device)
            _compare("bottom_diff", cpu.bottom_diff, gpu.bottom_diff, device, rtol, layer)
            _compare("param_diff", cpu.param_diff, gpu.param_diff, device, rtol, layer)
    return cpu, gpu


def _compare(what, want_list, got_list, device, rtol, layer) -> None:
    for i, (want, got) in enumerate(zip(want_list, got_list)):
        if want is None:
            continue
        got = device.to_host(got)
        err = relative_error(got, want)
        assert err <= rtol, (f"{layer.type} '{layer.name}': {what}[{i}] GPU differs from CPU: "
                             f"relative error {err:.3g} > {rtol:g}"
                             f"{' (NaN: an element was not written)' if np.isnan(got).any() else ''}")


def frozen_weight_backward(layer: Layer, cpu: StepIO, gpu: StepIO, device) -> None:
    """Backward of ``layer`` on both devices with the weight frozen (``param_diff[0]`` None),
    the GPU's bottom and every scratch buffer poisoned with NaN first: with the weight frozen
    backward must read neither the bottom nor what the forward left in its scratch."""
    device.fill(gpu.bottom[0], np.nan)
    for buf in gpu.buf.values():
        device.fill(buf, np.nan)
    for io in (cpu, gpu):
        io.param_diff[0] = None
    layer.backward(cpu, CPU)
    layer.backward(gpu, device)
