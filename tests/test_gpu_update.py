"""The solver's GPU update (update.cu) against the CPU rules, iteration by iteration.

Each case runs one rule on the CPU and on ``gpu_device`` from the same weights, gradients and
(random) history, and compares w, the step left in g and the history after every iteration.
"""

import numpy as np
import pytest

from gpu_check import relative_error, to_device
from trainnet.netcfg.solver import SolverConfig
from trainnet.solver.update import update_rule

RULES = {
    "SGD": {"momentum": 0.9},
    "Nesterov": {"momentum": 0.9},
    "AdaGrad": {"delta": 1e-7},
    "RMSProp": {"rms_decay": 0.9, "delta": 1e-7},
    "AdaDelta": {"momentum": 0.95, "delta": 1e-6},
    "Adam": {"momentum": 0.9, "momentum2": 0.999},
}
OPTIONS = {
    "L2": {"weight_decay": 0.01},
    "L1": {"weight_decay": 0.01, "regularization_type": "L1"},
    "no-decay": {},
    "clipped": {"weight_decay": 0.01, "clip_gradients": 5.0},      # |g| ~ 40: always clips
    "not-clipped": {"weight_decay": 0.01, "clip_gradients": 1e4},  # never clips
    "iter_size-L1-clipped": {"weight_decay": 0.003, "regularization_type": "L1",
                             "clip_gradients": 2.0, "iter_size": 2},
}
# Segments of the flat arena (as parameter blobs would lay it out): size, lr_mult, decay_mult.
SEGMENTS = [(700, 1.0, 1.0), (37, 2.0, 0.0), (300, 0.0, 1.0), (1, 1.0, 2.0), (562, 0.5, 0.0)]
ITERATIONS = [(0, 0.1), (1, 0.05), (7, 0.02), (120, 0.007)]  # (it, rate)
TOLERANCE = {"AdaDelta": 1e-4, "Adam": 1e-4}


def cfg(kind, **kw) -> SolverConfig:
    return SolverConfig(net="x.yaml", type=kind, **{**RULES[kind], **kw})


def multipliers():
    lr = np.concatenate([np.full(n, m, np.float32) for n, m, _ in SEGMENTS])
    decay = np.concatenate([np.full(n, d, np.float32) for n, _, d in SEGMENTS])
    return lr, decay


def random_history(rule, rng):
    """Momenta of either sign; running squares positive (as they would be)."""
    n = rule.lr_mult.size
    return {k: (rng.normal(size=n) if k in ("momentum", "m") else rng.uniform(0, 2, n) ** 2)
            .astype(np.float32) * np.float32(0.1) for k in rule.history_names}


def cpu_and_gpu_rules(kind, options, device, rng):
    c = cfg(kind, **options)
    lr_mult, decay_mult = multipliers()
    cpu = update_rule(kind)(c, lr_mult.copy(), decay_mult.copy())
    gpu = update_rule(kind)(c, lr_mult.copy(), decay_mult.copy())
    gpu.to_device(device)
    history = random_history(cpu, rng)
    cpu.load_history(history)
    gpu.load_history(history)
    return cpu, gpu


def segments(array):
    start = 0
    for n, _, _ in SEGMENTS:
        yield array[start:start + n]
        start += n


def assert_close(got, want, tol, what):
    err = relative_error(got, want)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol}"
    for i, (a, b) in enumerate(zip(segments(got), segments(want))):
        err = relative_error(a, b)
        assert err <= tol, f"{what}, segment {i}: relative error {err:.3g} > {tol}"


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", RULES)
def test_gpu_update_matches_cpu(gpu_device, kind, option):
    rng = np.random.default_rng([list(RULES).index(kind), list(OPTIONS).index(option)])
    cpu, gpu = cpu_and_gpu_rules(kind, OPTIONS[option], gpu_device, rng)
    tol = TOLERANCE.get(kind, 1e-5)
    n = cpu.lr_mult.size
    w_cpu = rng.normal(size=n).astype(np.float32)
    w_gpu, g_gpu = to_device(gpu_device, w_cpu), gpu_device.zeros((n,))
    for it, rate in ITERATIONS:
        g_cpu = rng.normal(size=n).astype(np.float32)
        gpu_device.upload(g_gpu, g_cpu)
        cpu.apply(w_cpu, g_cpu, rate, it)
        gpu.prepare(rate, it)
        gpu.apply_gpu(w_gpu, g_gpu)
        assert_close(gpu_device.to_host(g_gpu), g_cpu, tol, f"iteration {it}: step")
        assert_close(gpu_device.to_host(w_gpu), w_cpu, tol, f"iteration {it}: w")
        got = gpu.history_host()
        for k, want in cpu.history_host().items():
            assert_close(got[k], want, tol, f"iteration {it}: history {k}")


@pytest.mark.parametrize("kind", RULES)
def test_a_captured_update_reads_the_iteration_from_device_memory(gpu_device, kind):
    """Captured once and replayed after ``prepare`` equals eager calls, rate and it varying."""
    rng = np.random.default_rng(3)
    options = {"weight_decay": 0.01, "clip_gradients": 5.0}
    _, eager = cpu_and_gpu_rules(kind, options, gpu_device, np.random.default_rng(4))
    _, captured = cpu_and_gpu_rules(kind, options, gpu_device, np.random.default_rng(4))
    n = eager.lr_mult.size
    w0 = rng.normal(size=n).astype(np.float32)
    w_eager, g_eager = to_device(gpu_device, w0), gpu_device.zeros((n,))
    w_graph, g_graph = to_device(gpu_device, w0), gpu_device.zeros((n,))
    graph = gpu_device.backend.capture(lambda: captured.apply_gpu(w_graph, g_graph))
    for it, rate in ITERATIONS:
        g = rng.normal(size=n).astype(np.float32)
        gpu_device.upload(g_eager, g)
        gpu_device.upload(g_graph, g)
        eager.prepare(rate, it)
        eager.apply_gpu(w_eager, g_eager)
        captured.prepare(rate, it)
        graph.replay()
        np.testing.assert_array_equal(gpu_device.to_host(w_graph), gpu_device.to_host(w_eager))
        np.testing.assert_array_equal(gpu_device.to_host(g_graph), gpu_device.to_host(g_eager))
        for k, v in eager.history_host().items():
            np.testing.assert_array_equal(captured.history_host()[k], v)
    assert not np.array_equal(gpu_device.to_host(w_graph), w0)


@pytest.mark.parametrize("clip, launches", [(-1.0, 1), (5.0, 3)])
def test_the_update_is_one_fused_launch_plus_the_clip(gpu_device, clip, launches):
    backend = gpu_device.backend
    if not hasattr(backend, "launches"):
        pytest.skip("launch counting is the emulated backend's")
    _, rule = cpu_and_gpu_rules("Adam", {"clip_gradients": clip}, gpu_device,
                                np.random.default_rng(0))
    n = rule.lr_mult.size
    w, g = gpu_device.zeros((n,)), gpu_device.zeros((n,))
    rule.prepare(0.1, 0)
    before = backend.launches
    rule.apply_gpu(w, g)
    assert backend.launches - before == launches


def test_history_round_trips_on_either_device(gpu_device):
    rng = np.random.default_rng(5)
    cpu, gpu = cpu_and_gpu_rules("Adam", {}, gpu_device, rng)
    saved = random_history(cpu, rng)
    for rule in (cpu, gpu):
        rule.load_history(saved)
        got = rule.history_host()
        assert got.keys() == saved.keys()
        for k in saved:
            np.testing.assert_array_equal(got[k], saved[k])
            assert got[k] is not rule.history[k]  # a copy: later updates do not change it
    with pytest.raises(ValueError, match="history/v missing or of another size"):
        gpu.load_history({"m": saved["m"]})
    with pytest.raises(ValueError, match="history/m missing or of another size"):
        gpu.load_history({**saved, "m": saved["m"][:-1]})
    np.testing.assert_array_equal(gpu.history_host()["m"], saved["m"])  # nothing half-loaded


def test_apply_gpu_needs_a_gpu():
    lr_mult, decay_mult = multipliers()
    rule = update_rule("SGD")(cfg("SGD"), lr_mult, decay_mult)
    with pytest.raises(RuntimeError, match="call to_device"):
        rule.apply_gpu(np.zeros_like(lr_mult), np.zeros_like(lr_mult))
