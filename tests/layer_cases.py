"""A layer's tests as a table of cases, from which the checks are generated.

A ``Case`` names a layer (type, params, phase, how many tops its config names), its bottoms, and
what to check: the forward against a NumPy ``ref``, the gradient (``grad``, with a ``kink`` to
step around), CPU/GPU parity (``gpu``, with its tolerance, the passes, a plan's context, and the
extra blobs to ``compare``), and running with top and bottom the same arrays (``in_place``).
``layer_tests(CASES)`` turns the table into parametrized tests; a test module takes them with
``globals().update(layer_tests(CASES))``.  Special cases (graph replay, ties, bad labels) stay
plain tests beside the table.  The checks themselves are ``layer_check``'s and ``gpu_check``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Optional, Sequence

import numpy as np
import pytest

from gpu_check import check_parity, relative_error
from layer_check import check_gradients, make_io, run_forward
from trainnet.layers.base import NO_PLAN, Layer, StepContext, layer_class
from trainnet.runtime.device import CPU


def normal(shape, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape) * scale


@dataclass(frozen=True)
class Case:
    type: str
    params: dict = field(default_factory=dict)
    bottoms: Sequence[np.ndarray] = ()
    tops: Optional[int] = None          # tops named in the config (Split, Accuracy), else the default
    phase: str = "TRAIN"
    ref: Optional[Callable] = None      # (bottoms, param blobs, params) -> top or list of tops
    rtol: float = 1e-6                  # forward against ``ref``
    atol: float = 0.0
    grad: bool = False                  # central-difference gradient check
    kink: Optional[float] = None        # inputs within 1e-3 of it are not differentiated there
    propagate_down: Optional[list[bool]] = None   # for the gradient and the parity checks
    gpu: bool = True                    # CPU/GPU parity
    gpu_rtol: float = 1e-4
    backward: bool = True               # parity of the backward too
    passes: int = 1
    ctx: StepContext = NO_PLAN          # what a plan decided for the step (fused ReLU, forward-only)
    top_diffs: Optional[list] = None    # the parity's top gradients (a loss weight), else random
    compare: tuple[str, ...] = ()       # after parity: buffers by name, "top_diff", "state"
    in_place: bool = False              # top and bottom (and their diffs) the same arrays
    seed: int = 0
    id: Optional[str] = None

    def __str__(self) -> str:
        if self.id:
            return f"{self.type}-{self.id}"
        shapes = "+".join("x".join(map(str, np.shape(b))) for b in self.bottoms)
        params = "-".join(f"{k}={v}" for k, v in self.params.items() if not isinstance(v, dict))
        tops = f"{self.tops}-tops" if self.tops is not None else ""
        down = "down=" + "".join("01"[p] for p in self.propagate_down) if self.propagate_down else ""
        ctx = "+".join(k for k in ("forward_only", "fused_relu") if getattr(self.ctx, k))
        return "-".join(s for s in (self.type, params or "default", shapes, tops, down, ctx) if s)


def build_case(case: Case, in_place: bool = False) -> Layer:
    """The layer as the plan builds it: the config's tops (and ``top == bottom`` in place)."""
    cls = layer_class(case.type)
    common = None
    if in_place:
        common = SimpleNamespace(bottom=["x"], top=["x"])
    elif case.tops is not None:
        common = SimpleNamespace(top=[f"t{i}" for i in range(case.tops)])
    shapes = [tuple(np.shape(b)) for b in case.bottoms]
    return cls("layer", cls.Params.model_validate(case.params), case.phase, shapes, common=common)


def check_forward(case: Case) -> None:
    layer = build_case(case)
    io = run_forward(layer, [np.asarray(b) for b in case.bottoms], seed=case.seed, ctx=case.ctx)
    want = case.ref(io.bottom, io.params, case.params)
    want = want if isinstance(want, (list, tuple)) else [want]
    assert len(want) == len(io.top)
    for got, w in zip(io.top, want):
        assert got.shape == np.shape(w)
        np.testing.assert_allclose(got, w, rtol=case.rtol, atol=case.atol)


def check_case_gradients(case: Case) -> None:
    check_gradients(build_case(case), list(case.bottoms), seed=case.seed, ctx=case.ctx,
                    check_bottoms=case.propagate_down, kink=case.kink,
                    kink_range=1e-3 if case.kink is not None else -1.0)


def check_case_parity(case: Case, device) -> None:
    layer = build_case(case)
    top_diffs = None if case.top_diffs is None else [np.asarray(d) for d in case.top_diffs]
    cpu, gpu = check_parity(layer, case.bottoms, device, seed=case.seed, rtol=case.gpu_rtol,
                            propagate_down=case.propagate_down, backward=case.backward,
                            top_diffs=top_diffs, passes=case.passes, ctx=case.ctx)
    for name in case.compare:
        if name == "state":
            pairs = [(k, v, gpu.state.get_state()[k]) for k, v in cpu.state.get_state().items()]
        elif name == "top_diff":
            pairs = [(f"top_diff[{i}]", w, device.to_host(g))
                     for i, (w, g) in enumerate(zip(cpu.top_diff, gpu.top_diff))]
        else:
            pairs = [(name, cpu.buf[name], device.to_host(gpu.buf[name]))]
        for what, want, got in pairs:
            if np.asarray(want).dtype.kind == "f":
                err = relative_error(got, want)
                assert err <= case.gpu_rtol, f"{what}: relative error {err:.3g}"
            else:
                np.testing.assert_array_equal(got, want, err_msg=what)


def check_in_place(case: Case) -> None:
    """Top and bottom (and their diffs) the same arrays, as the plan binds an in-place layer:
    the same top and gradients as apart; a backward that reads the bottom keeps a copy."""
    x = [np.array(b, dtype=np.float64) for b in case.bottoms]
    dy = normal(x[0].shape, case.seed + 45)
    apart = build_case(case)
    ref = make_io(apart, [b.copy() for b in x], seed=case.seed)
    apart.forward(ref, CPU)
    ref.top_diff[0][...] = dy
    apart.backward(ref, CPU)

    layer, ctx = build_case(case, in_place=True), StepContext(in_place=True)
    assert layer.in_place_ok
    assert ("bottom" in layer.buffers(ctx)) == layer.backward_reads_bottom
    io = make_io(layer, [b.copy() for b in x], params=[p.copy() for p in ref.params],
                 seed=case.seed, ctx=ctx)
    io.top, io.top_diff = io.bottom, io.bottom_diff
    layer.forward(io, CPU)
    np.testing.assert_array_equal(io.top[0], ref.top[0])
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    np.testing.assert_array_equal(io.bottom_diff[0], ref.bottom_diff[0])
    for got, want in zip(io.param_diff, ref.param_diff):
        np.testing.assert_array_equal(got, want)


def check_graph_replay(layer, bottoms, device, new_bottoms, *, top_diffs=None,
                       new_top_diffs=None, propagate_down=None) -> None:
    """Capture one forward (and backward) as a graph, then replay it on new inputs: the results
    must follow the new inputs, so everything ran through the backend and nothing was computed
    or read on the host while the pass was recorded."""
    cpu, gpu = check_parity(layer, bottoms, device, top_diffs=top_diffs,
                            propagate_down=propagate_down)
    backward = layer.has_backward

    def step():
        layer.forward(gpu, device)
        if backward:
            layer.backward(gpu, device)
    graph = device.backend.capture(step)
    for dst, host in zip(gpu.bottom, new_bottoms):
        device.upload(dst, np.asarray(host, dst.dtype))
    for i, d in enumerate(new_top_diffs or []):
        device.upload(gpu.top_diff[i], np.asarray(d, np.float32))
        cpu.top_diff[i][...] = d
    cpu.bottom = [np.asarray(b, np.float32) for b in new_bottoms]
    graph.replay()
    layer.forward(cpu, CPU)
    if backward:
        layer.backward(cpu, CPU)
    outputs = [(cpu.top, gpu.top)] + ([(cpu.bottom_diff, gpu.bottom_diff)] if backward else [])
    for want_list, got_list in outputs:
        for want, got in zip(want_list, got_list):
            if want is not None:
                np.testing.assert_allclose(device.to_host(got), want, rtol=1e-4, atol=1e-6)


def layer_tests(cases: Sequence[Case], prefix: str = "") -> dict[str, Callable]:
    """The tests ``cases`` call for, by name (``test_<prefix>forward_matches_reference``,
    ``..._gradients``, ``..._gpu_matches_cpu``, ``..._in_place_matches_out_of_place``); a check
    no case asks for is left out rather than collected empty."""
    def forward_matches_reference(case):
        check_forward(case)

    def gradients(case):
        check_case_gradients(case)

    def gpu_matches_cpu(case, gpu_device):
        check_case_parity(case, gpu_device)

    def in_place_matches_out_of_place(case):
        check_in_place(case)

    tests = {}
    for test, wanted in [(forward_matches_reference, lambda c: c.ref is not None),
                         (gradients, lambda c: c.grad), (gpu_matches_cpu, lambda c: c.gpu),
                         (in_place_matches_out_of_place, lambda c: c.in_place)]:
        chosen = [c for c in cases if wanted(c)]
        if chosen:
            name = test.__name__ = f"test_{prefix}{test.__name__}"
            tests[name] = pytest.mark.parametrize("case", chosen, ids=[str(c) for c in chosen])(test)
    return tests
