"""The solver: lr policies, the SGD update, snapshots and exact resume, fine-tuning by name."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from synthetic import write_project
from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.netcfg import load_solver, load_solver_text
from trainnet.netcfg.solver import SolverConfig
from trainnet.solver import snapshot as snap
from trainnet.netcfg.lr_policies import POLICIES
from trainnet.netcfg.solver_types import TYPES as SOLVER_TYPES
from trainnet.solver.lr_policy import RATES, learning_rate
from trainnet.solver.solver import Solver
from trainnet.solver.update import RULES, SGD
from trainnet.solver.weights import FINETUNE, load_weights


def cfg(**kw) -> SolverConfig:
    return SolverConfig(net="x.yaml", **kw)


def test_inv_policy_matches_caffe_lenet_log():
    # Caffe's LeNet log prints "Iteration 100, lr = 0.00992565" and "Iteration 9900, lr = 0.00596843".
    c = cfg(base_lr=0.01, lr_policy="inv", gamma=0.0001, power=0.75)
    assert learning_rate(c, 100) == pytest.approx(0.00992565, abs=5e-9)
    assert learning_rate(c, 9900) == pytest.approx(0.00596843, abs=5e-9)


@pytest.mark.parametrize("kw, it, expected", [
    ({"lr_policy": "fixed"}, 1234, 0.1),
    ({"lr_policy": "step", "gamma": 0.5, "stepsize": 100}, 250, 0.1 * 0.25),
    ({"lr_policy": "exp", "gamma": 0.99}, 10, 0.1 * 0.99 ** 10),
    ({"lr_policy": "multistep", "gamma": 0.1, "stepvalue": [10, 20]}, 9, 0.1),
    ({"lr_policy": "multistep", "gamma": 0.1, "stepvalue": [10, 20]}, 10, 0.01),
    ({"lr_policy": "multistep", "gamma": 0.1, "stepvalue": [10, 20]}, 25, 0.001),
    ({"lr_policy": "poly", "power": 2.0, "max_iter": 100}, 50, 0.1 * 0.25),
    ({"lr_policy": "sigmoid", "gamma": -0.1, "stepsize": 50}, 50, 0.05),
    ({"lr_policy": "sigmoid", "gamma": -0.1, "stepsize": 50}, 60, 0.1 / (1 + math.exp(1.0))),
])
def test_lr_policies(kw, it, expected):
    assert learning_rate(cfg(base_lr=0.1, **kw), it) == pytest.approx(expected, rel=1e-12)


def test_every_declared_policy_has_a_rate():
    assert RATES.names() == POLICIES.names()


def test_every_declared_solver_type_has_a_rule():
    assert RULES.names() == SOLVER_TYPES.names()


def test_policy_needs_its_fields():
    with pytest.raises(TrainnetError, match="lr_policy step needs stepsize > 0"):
        load_solver_text("net: n.yaml\nlr_policy: step\n", "s.yaml")


def _reference_sgd(w, g, h, lr, lr_mult, decay_mult, mu, wd, l1=False, clip=-1.0, iter_size=1):
    """Caffe's SGDSolver::ApplyUpdate, written out in float64."""
    w, g, h = (np.asarray(a, np.float64).copy() for a in (w, g, h))
    if clip >= 0:
        norm = np.sqrt((g ** 2).sum())
        if norm > clip:
            g *= clip / norm
    g /= iter_size
    g += wd * decay_mult * (np.sign(w) if l1 else w)
    h = mu * h + lr * lr_mult * g
    return w - h, h


@pytest.mark.parametrize("options", [{}, {"regularization_type": "L1"}, {"clip_gradients": 0.5},
                                     {"iter_size": 4}])
def test_sgd_update_matches_reference(options):
    rng = np.random.default_rng(0)
    n = 40
    w = rng.normal(size=n).astype(np.float32)
    lr_mult = np.where(np.arange(n) < 30, 1.0, 2.0).astype(np.float32)
    decay_mult = np.where(np.arange(n) < 30, 1.0, 0.0).astype(np.float32)
    c = cfg(momentum=0.9, weight_decay=0.01, **options)
    rule = SGD(c, lr_mult, decay_mult)
    ref_w, ref_h = w.astype(np.float64), np.zeros(n)
    for it in range(3):
        g = rng.normal(size=n).astype(np.float32)
        ref_w, ref_h = _reference_sgd(ref_w, g, ref_h, 0.1, lr_mult, decay_mult, 0.9, 0.01,
                                      l1=c.regularization_type == "L1", clip=c.clip_gradients,
                                      iter_size=c.iter_size)
        rule.apply(w, g.copy(), 0.1, it)
        np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rule.history["momentum"], ref_h, rtol=1e-5, atol=1e-6)


def test_training_learns_and_logs(tmp_path):
    lines = []
    s = Solver(load_solver(write_project(tmp_path, max_iter=150)), log=lines.append)
    result = s.solve()
    assert result["accuracy"] >= 0.9
    records = [json.loads(l) for l in (tmp_path / "out/tiny_log.jsonl").read_text().splitlines()]
    tests = [r for r in records if r["event"] == "test"]
    assert [r["iter"] for r in tests] == [0, 50, 100, 150]
    assert tests[0]["outputs"]["accuracy"] < 0.6 < tests[-1]["outputs"]["accuracy"]
    train = [r for r in records if r["event"] == "train"]
    assert [r["iter"] for r in train] == list(range(0, 150, 10))
    assert train[-1]["smoothed_loss"] < train[0]["smoothed_loss"]
    assert any("Testing net (#0): accuracy" in l for l in lines)
    assert (tmp_path / "out/tiny_iter_150.safetensors").is_file()   # snapshot_after_train


def test_resume_is_bit_exact(tmp_path):
    """Training 2N iterations equals N, snapshot, resume, N more (dropout, shuffling included)."""
    solver = write_project(tmp_path, max_iter=60, snapshot=30)
    full = Solver(load_solver(solver))
    full.solve()
    expected = full.net.params.data.copy()

    half = Solver(load_solver(solver))
    half.cfg = half.cfg.model_copy(update={"max_iter": 30})
    half.solve()
    resumed = Solver(load_solver(solver))
    resumed.restore(tmp_path / "out/tiny_iter_30.solverstate")
    assert resumed.iter == 30
    resumed.solve()
    np.testing.assert_array_equal(resumed.net.params.data, expected)
    np.testing.assert_array_equal(resumed.rule.history["momentum"], full.rule.history["momentum"])


def test_snapshots_are_atomic_and_self_describing(tmp_path):
    s = Solver(load_solver(write_project(tmp_path, max_iter=20, snapshot=10)))
    s.solve()
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["tiny_iter_10.safetensors", "tiny_iter_10.solverstate", "tiny_iter_20.safetensors",
                     "tiny_iter_20.solverstate", "tiny_log.jsonl"]  # no .tmp left behind
    weights = snap.read_tensors(tmp_path / "out/tiny_iter_20.safetensors", "weights")
    assert set(weights) == {"conv1.0", "conv1.1", "ip1.0", "ip1.1", "ip2.0", "ip2.1"}
    np.testing.assert_array_equal(weights["ip1.0"], s.net.params.named()["ip1.0"])
    with pytest.raises(TrainnetError, match="not a trainnet solver state"):
        s.restore(tmp_path / "out/tiny_iter_20.safetensors")


def test_corrupt_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    s = Solver(load_solver(write_project(tmp_path, max_iter=1)))
    with pytest.raises(TrainnetError, match="not a readable weights file"):
        load_weights(bad, s.net.params, FINETUNE)
    with pytest.raises(TrainnetError, match="no such weights file"):
        load_weights(tmp_path / "missing.safetensors", s.net.params, FINETUNE)


def test_finetune_by_layer_name(tmp_path):
    s = Solver(load_solver(write_project(tmp_path, max_iter=10)))
    s.solve()
    named = s.net.params.named()
    tensors = {k: v.copy() for k, v in named.items() if not k.startswith("ip2")}
    tensors["old_classifier.0"] = np.zeros((7, 16), np.float32)
    snap.save_tensors(tmp_path / "w.safetensors", tensors, {})
    fresh = Solver(load_solver(tmp_path / "solver.yaml"))
    report = load_weights(tmp_path / "w.safetensors", fresh.net.params, FINETUNE)
    assert report.loaded_layers == ["conv1", "ip1"] and report.skipped == ["old_classifier"]
    assert report.missing == ["ip2.0", "ip2.1"]
    np.testing.assert_array_equal(fresh.net.params.named()["ip1.0"], named["ip1.0"])
    tensors["ip1.0"] = np.zeros((3, 3), np.float32)
    snap.save_tensors(tmp_path / "bad.safetensors", tensors, {})
    with pytest.raises(TrainnetError, match=r"layer 'ip1' blob 0: shape \(3, 3\) in the file but "
                                            r"\(16, 36\) in the net"):
        load_weights(tmp_path / "bad.safetensors", fresh.net.params, FINETUNE)


def test_stop_request_snapshots_current_iteration(tmp_path):
    lines = []
    s = Solver(load_solver(write_project(tmp_path, max_iter=1000)), log=lines.append)

    def log(line):
        lines.append(line)
        if line.startswith("Iteration 20 "):
            s.request_stop()

    s.log = log
    s.solve()
    assert s.iter == 21
    assert (tmp_path / "out/tiny_iter_21.solverstate").is_file()
    assert "Stopped at iteration 21" in lines


def _reference_rule(kind, w, grads, lr, lr_mult, mu=0.9, mu2=0.999, delta=1e-8, rms_decay=0.99):
    """Caffe's ComputeUpdateValue of each solver type, written out in float64 (no decay)."""
    w = np.asarray(w, np.float64).copy()
    h = np.zeros_like(w)
    h2 = np.zeros_like(w)
    for t, g in enumerate(grads):
        g = np.asarray(g, np.float64)
        local = lr * lr_mult
        if kind == "Nesterov":
            prev = h.copy()
            h = mu * h + local * g
            step = (1 + mu) * h - mu * prev
        elif kind == "AdaGrad":
            h = h + g * g
            step = local * g / (np.sqrt(h) + delta)
        elif kind == "RMSProp":
            h = rms_decay * h + (1 - rms_decay) * g * g
            step = local * g / (np.sqrt(h) + delta)
        elif kind == "AdaDelta":
            h = mu * h + (1 - mu) * g * g
            update = g * np.sqrt((h2 + delta) / (h + delta))
            h2 = mu * h2 + (1 - mu) * update * update
            step = local * update
        elif kind == "Adam":
            h = mu * h + (1 - mu) * g
            h2 = mu2 * h2 + (1 - mu2) * g * g
            corr = np.sqrt(1 - mu2 ** (t + 1)) / (1 - mu ** (t + 1))
            step = local * corr * h / (np.sqrt(h2) + delta)
        w = w - step
    return w


@pytest.mark.parametrize("kind, momentum, delta", [("Nesterov", 0.9, 1e-8), ("AdaGrad", 0.0, 1e-8),
                                                   ("RMSProp", 0.0, 1e-8), ("AdaDelta", 0.95, 1e-6),
                                                   ("Adam", 0.9, 1e-8)])
def test_other_solver_types_match_caffe(kind, momentum, delta):
    from trainnet.solver.update import update_rule

    rng = np.random.default_rng(1)
    n = 24
    w0 = rng.normal(size=n).astype(np.float32)
    lr_mult = np.where(np.arange(n) < 16, 1.0, 2.0).astype(np.float32)
    grads = [rng.normal(size=n).astype(np.float32) for _ in range(4)]
    c = cfg(type=kind, momentum=momentum, delta=delta)
    rule = update_rule(kind)(c, lr_mult, np.ones(n, np.float32))
    w = w0.copy()
    for it, g in enumerate(grads):
        rule.apply(w, g.copy(), 0.1, it)
    expected = _reference_rule(kind, w0, grads, lr=0.1, lr_mult=lr_mult, mu=momentum, delta=delta)
    np.testing.assert_allclose(w, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["AdaGrad", "RMSProp"])
def test_momentum_is_refused_where_caffe_refuses_it(kind):
    with pytest.raises(TrainnetError, match=f"s.yaml:3: solver type {kind} does not use momentum"):
        load_solver_text(f"net: n.yaml\nmomentum: 0.9\ntype: {kind}\n", "s.yaml")


def test_snapshot_prefix_defaults_to_the_solver_file(tmp_path):
    solver = write_project(tmp_path, max_iter=5)
    solver.write_text(solver.read_text().replace(f"snapshot_prefix: {tmp_path / 'out/tiny'}\n", ""))
    s = Solver(load_solver(solver))
    s.solve()
    assert (tmp_path / "solver_iter_5.safetensors").is_file() and (tmp_path / "solver_log.jsonl").is_file()


def test_damaged_state_and_unwritable_snapshot_are_clear_errors(tmp_path):
    s = Solver(load_solver(write_project(tmp_path, max_iter=4, snapshot=2)))
    s.solve()
    state = tmp_path / "out/tiny_iter_4.solverstate"
    tensors, meta = snap.load_state(state)
    del tensors["history/momentum"]
    snap.save_state(tmp_path / "damaged.solverstate", tensors, meta)
    (tmp_path / "damaged.solverstate").with_name(meta["weights"]).write_bytes(
        (tmp_path / "out" / meta["weights"]).read_bytes())
    with pytest.raises(TrainnetError, match="damaged solver state .history/momentum missing"):
        Solver(load_solver(tmp_path / "solver.yaml")).restore(tmp_path / "damaged.solverstate")
    del meta["rng"]
    snap.save_state(tmp_path / "damaged2.solverstate", tensors, meta)
    with pytest.raises(TrainnetError, match=r"damaged solver state \(lacks rng\)"):
        snap.load_state(tmp_path / "damaged2.solverstate")
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(TrainnetError, match="cannot write"):
        atomic_write(blocked / "sub" / "x.safetensors", b"123")
    before_tensors, before_meta = snap.load_state(state)
    s.snapshot()  # rewriting an existing snapshot replaces it whole
    after_tensors, after_meta = snap.load_state(state)
    assert after_meta == before_meta and after_tensors.keys() == before_tensors.keys()
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_state_of_another_net_is_refused(tmp_path):
    s = Solver(load_solver(write_project(tmp_path, max_iter=4)))
    s.solve()
    other = tmp_path / "other"
    solver = write_project(other, max_iter=4)
    (other / "net.yaml").write_text((other / "net.yaml").read_text().replace("ip2", "fc2"))
    with pytest.raises(TrainnetError, match="the state is of another net"):
        Solver(load_solver(solver)).restore(tmp_path / "out/tiny_iter_4.solverstate")


def test_a_learnable_layer_only_in_test_keeps_weights_of_its_own(tmp_path):
    solver = write_project(tmp_path, max_iter=20)
    net = tmp_path / "net.yaml"
    net.write_text(net.read_text() + "  - {name: probe, type: InnerProduct, bottom: ip2, top: probe, "
                   "num_output: 2, include: {phase: TEST}, weight_filler: {type: xavier}}\n")
    s = Solver(load_solver(solver))
    probe = s.test_nets[0].own_params.named()["probe.0"]
    before = probe.copy()
    result = s.solve()
    assert "probe.0" not in s.net.params.named()           # not trained, not snapshotted
    np.testing.assert_array_equal(probe, before)
    assert np.abs(before).max() > 0 and result["probe"].shape == (32, 2)
