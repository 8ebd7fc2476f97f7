"""debug_info (Caffe's per-layer mean absolute data and diff at display iterations), the
divergence report that logs them, and the warning of a loss that explodes while still finite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainnet.netcfg import load_solver
from trainnet.runtime.debug_info import mean_abs
from trainnet.solver.debug_info import EXPLOSION_DECAY, EXPLOSION_WARM_UP, ExplosionWatch, lines
from trainnet.solver.solver import Solver
from trainnet.solver.testing import Diverged

TINY = """name: tiny
layer:
  - {name: data, type: DummyData, top: [x, t], shape: [{dim: [4, 3]}, {dim: [4, 2]}],
     data_filler: [{type: gaussian}, {type: gaussian}]}
  - {name: ip, type: InnerProduct, bottom: x, top: y, num_output: 2,
     weight_filler: {type: gaussian, std: 0.5}, bias_filler: {type: constant, value: 0.1}}
  - {name: loss, type: EuclideanLoss, bottom: [y, t], top: loss}
"""

# deep enough that a reuse-packed plan writes later blobs over earlier ones
DEEP = """name: deep
layer:
  - {name: data, type: DummyData, top: [x, t], shape: [{dim: [8, 16]}, {dim: [8, 4]}],
     data_filler: [{type: gaussian}, {type: gaussian}]}
  - {name: ip1, type: InnerProduct, bottom: x, top: a, num_output: 32, weight_filler: {type: xavier}}
  - {name: s1, type: Sigmoid, bottom: a, top: b}
  - {name: ip2, type: InnerProduct, bottom: b, top: c, num_output: 32, weight_filler: {type: xavier}}
  - {name: s2, type: TanH, bottom: c, top: d}
  - {name: ip3, type: InnerProduct, bottom: d, top: e, num_output: 32, weight_filler: {type: xavier}}
  - {name: s3, type: Sigmoid, bottom: e, top: f}
  - {name: ip4, type: InnerProduct, bottom: f, top: g, num_output: 4, weight_filler: {type: xavier}}
  - {name: loss, type: EuclideanLoss, bottom: [g, t], top: loss}
"""

# weights 0, then a square root: the loss is finite, the gradient at 0 infinite
SQRT_OF_ZERO = """name: root
layer:
  - {name: data, type: DummyData, top: [x, t], shape: [{dim: [4, 3]}, {dim: [4, 1]}],
     data_filler: [{type: gaussian}, {type: gaussian}]}
  - {name: ip, type: InnerProduct, bottom: x, top: y, num_output: 1}
  - {name: root, type: Power, bottom: y, top: r, power: 0.5}
  - {name: loss, type: EuclideanLoss, bottom: [r, t], top: loss}
"""

# one constant batch, weights summing to s: the loss is s^2 * 9/2 / 4 ... and base_lr 1 turns
# s into -2s every iteration: the loss grows fourfold per iteration, finite for ~60 iterations
GROWING = """name: growing
layer:
  - {name: data, type: DummyData, top: [x, t], shape: [{dim: [4, 3]}, {dim: [4, 1]}],
     data_filler: [{type: constant, value: 1}, {type: constant, value: 0}]}
  - {name: ip, type: InnerProduct, bottom: x, top: y, num_output: 1, bias_term: false,
     weight_filler: {type: constant, value: 0.1}}
  - {name: loss, type: EuclideanLoss, bottom: [y, t], top: loss}
"""


# an in-place ReLU the train plan would fuse into its InnerProduct (plan/fuse.py), and a Scale
# it would fold into its BatchNorm
FUSABLE = """name: fusable
layer:
  - {name: data, type: DummyData, top: [x, t], shape: [{dim: [4, 3]}, {dim: [4, 2]}],
     data_filler: [{type: gaussian}, {type: gaussian}]}
  - {name: ip1, type: InnerProduct, bottom: x, top: ip1, num_output: 2,
     weight_filler: {type: gaussian, std: 0.5}, bias_filler: {type: constant, value: 0.1}}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: loss, type: EuclideanLoss, bottom: [ip1, t], top: loss}
"""

BN_SCALE = """name: bn
layer:
  - {name: data, type: DummyData, top: [x, t], shape: [{dim: [4, 3]}, {dim: [4, 3]}],
     data_filler: [{type: gaussian}, {type: gaussian}]}
  - {name: bn, type: BatchNorm, bottom: x, top: b}
  - {name: scale, type: Scale, bottom: b, top: b, bias_term: true}
  - {name: loss, type: EuclideanLoss, bottom: [b, t], top: loss}
"""


def project(folder: Path, net: str, **solver) -> Path:
    (folder / "net.yaml").write_text(net)
    fields = {"net": "net.yaml", "base_lr": 0.1, "max_iter": 3, "display": 2, "debug_info": True,
              "random_seed": 5, "snapshot_prefix": f"{folder}/run", "snapshot_after_train": False}
    fields.update(solver)
    (folder / "solver.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in fields.items()))
    return folder / "solver.yaml"


def records(solver: Solver, event: str) -> list[dict]:
    found = [json.loads(line) for line in solver.log_path.read_text().splitlines()]
    return [r for r in found if r.get("event") == event]


def test_figures_are_the_hand_computed_ones(tmp_path):
    """Every figure of a display iteration against NumPy on the blobs of that iteration."""
    logged: list[str] = []
    s = Solver(load_solver(project(tmp_path, TINY)), log=logged.append,
               compile_options={"reuse_memory": False})  # so that x and t can be read after
    w, b = (s.net.params.named()[k].copy() for k in ("ip.0", "ip.1"))
    s.step_once()
    x, t = s.net.data("x").copy(), s.net.data("t").copy()
    y = x @ w.T + b
    dy = (y - t) / 4
    dw, db = dy.T @ x, dy.sum(0)
    m = lambda a: float(np.abs(np.asarray(a, np.float64)).mean())
    got = s.figures.record()
    expected_forward = [("x", m(x)), ("t", m(t)), ("y", m(y)), (0, m(w)), (1, m(b)),
                        ("loss", ((y - t) ** 2).sum() / 8)]
    assert [f.get("top", f.get("param")) for f in got["forward"]] == [k for k, _ in expected_forward]
    np.testing.assert_allclose([f["data"] for f in got["forward"]],
                               [v for _, v in expected_forward], rtol=1e-5)
    assert [(f["layer"], f.get("bottom", f.get("param"))) for f in got["backward"]] == [
        ("loss", "y"), ("ip", 0), ("ip", 1)]
    np.testing.assert_allclose([f["diff"] for f in got["backward"]], [m(dy), m(dw), m(db)], rtol=1e-5)
    np.testing.assert_allclose(got["norms"]["l1"], [np.abs(w).sum() + np.abs(b).sum(),
                                                    np.abs(dw).sum() + np.abs(db).sum()], rtol=1e-5)
    np.testing.assert_allclose(got["norms"]["l2"], [np.sqrt((w ** 2).sum() + (b ** 2).sum()),
                                                    np.sqrt((dw ** 2).sum() + (db ** 2).sum())],
                               rtol=1e-5)
    # [Update]: the data before the update, the step (base_lr times the gradient) as the diff
    assert [(f["layer"], f["param"]) for f in got["update"]] == [("ip", 0), ("ip", 1)]
    np.testing.assert_allclose([f["data"] for f in got["update"]], [m(w), m(b)], rtol=1e-5)
    np.testing.assert_allclose([f["diff"] for f in got["update"]], [0.1 * m(dw), 0.1 * m(db)],
                               rtol=1e-5)
    # Caffe's order: ForwardBackward's lines (the norms last), the iteration's line, [Update]
    at = logged.index(next(line for line in logged if line.startswith("Iteration 0")))
    first = logged.index(f"    [Forward] Layer data, top blob x data: {m(x):.6g}")
    assert logged[first + 1] == f"    [Forward] Layer data, top blob t data: {m(t):.6g}"
    assert first < at and logged[at - 1].startswith(
        "    [Backward] All net params (data, diff): L1 norm = (")
    assert all(line.startswith(("    [Forward]", "    [Backward]")) for line in logged[first:at])
    assert logged[at + 1:at + 3] == [
        f"    [Update] Layer ip, param 0 data: {m(w):.6g}; diff: {0.1 * m(dw):.6g}",
        f"    [Update] Layer ip, param 1 data: {m(b):.6g}; diff: {0.1 * m(db):.6g}"]
    assert f"    [Forward] Layer ip, param blob 0 data: {m(w):.6g}" in logged
    assert f"    [Backward] Layer loss, bottom blob y diff: {m(dy):.6g}" in logged
    assert f"    [Backward] Layer ip, param blob 1 diff: {m(db):.6g}" in logged
    assert (f"    [Update] Layer ip, param 0 data: {m(w):.6g}; diff: {0.1 * m(dw):.6g}") in logged
    assert any(line.startswith("    [Backward] All net params (data, diff): L1 norm = (")
               for line in logged)


def test_records_only_at_display_iterations(tmp_path):
    logged: list[str] = []
    s = Solver(load_solver(project(tmp_path, TINY, max_iter=5)), log=logged.append)
    s.solve()
    found = records(s, "debug_info")
    assert [r["iter"] for r in found] == [0, 2, 4]
    assert {"forward", "backward", "norms", "update"} <= set(found[0])
    assert found[0]["forward"][2] == {"layer": "ip", "top": "y", "data": found[0]["forward"][2]["data"]}
    assert lines(found[1]) == [line for line in logged if line.startswith("    [")][
        len(lines(found[0])):2 * len(lines(found[0]))]
    assert sum(line.startswith("    [Forward] Layer ip, top blob y") for line in logged) == 3


def test_no_figures_without_debug_info(tmp_path):
    logged: list[str] = []
    s = Solver(load_solver(project(tmp_path, TINY, debug_info=False)), log=logged.append)
    s.solve()
    assert not records(s, "debug_info") and not any("[Forward]" in line for line in logged)


def test_a_packed_plan_shows_the_iterations_values(tmp_path):
    """With memory reuse, later steps write over earlier blobs: the figures, taken step by step,
    are still those of an unpacked plan, while reading the arena after the pass would not be."""
    packed = Solver(load_solver(project(tmp_path, DEEP, max_iter=1)))
    plain = Solver(load_solver(project(tmp_path, DEEP, max_iter=1)),
                   compile_options={"reuse_memory": False})
    assert packed.net.plan.arena_bytes < plain.net.plan.arena_bytes
    packed.step_once()
    plain.step_once()
    a, b = packed.figures.record(), plain.figures.record()
    assert [f.get("top", f.get("param")) for f in a["forward"]] == [
        f.get("top", f.get("param")) for f in b["forward"]]
    for kind in ("forward", "backward", "update"):
        for f, g in zip(a[kind], b[kind]):
            for field in ("data", "diff"):
                if field in f:
                    assert f[field] == pytest.approx(g[field], rel=1e-6), (kind, f, g)
    after = {f["top"]: mean_abs(packed.device, packed.net.data(f["top"]))
             for f in a["forward"] if "top" in f}
    shown = {f["top"]: f["data"] for f in a["forward"] if "top" in f}
    assert any(after[k] != pytest.approx(shown[k], rel=1e-3) for k in after)  # overwritten


def test_divergence_logs_the_table_up_to_the_first_nonfinite_blob(tmp_path):
    logged: list[str] = []
    s = Solver(load_solver(project(tmp_path, SQRT_OF_ZERO, display=0, debug_info=False)),
               log=logged.append)
    with pytest.raises(Diverged) as exc:
        s.solve()
    message = str(exc.value)
    assert len(message.splitlines()) == 1
    assert "first non-finite: layer 'root' (Power) backward: the gradient of its bottom 'y'" in message
    assert "logged above" in message
    table = exc.value.table
    assert table[0] == "    [Forward] Layer data, top blob x data: " + table[0].rsplit(" ", 1)[1]
    assert table[-1] == "    [Backward] Layer root, bottom blob y diff: inf"
    assert "    [Forward] Layer root, top blob r data: 0" in table
    at = logged.index("Iteration 0, debug_info of the pass up to the first non-finite blob:")
    assert logged[at + 1:at + 1 + len(table)] == table
    (record,) = records(s, "debug_info")
    assert record["diverged"] and record["iter"] == 0 and lines(record) == table


def test_a_finite_explosion_warns_once(tmp_path):
    logged: list[str] = []
    s = Solver(load_solver(project(tmp_path, GROWING, base_lr=1.0, max_iter=20, display=0,
                                   debug_info=False)), log=logged.append)
    s.solve()
    warned = [line for line in logged if "loss_explosion_factor" in line]
    assert len(warned) == 1 and warned[0].startswith(f"Iteration {EXPLOSION_WARM_UP}: Warning: the loss")
    (record,) = records(s, "loss_explosion")
    assert record["iter"] == EXPLOSION_WARM_UP and record["factor"] == 10
    assert record["loss"] > 10 * record["average"] > 0


def test_explosion_watch():
    watch = ExplosionWatch(10)
    assert [watch.check(1.0) for _ in range(EXPLOSION_WARM_UP)] == [None] * EXPLOSION_WARM_UP
    assert watch.check(9.0) is None and watch.check(float("nan")) is None
    older = [EXPLOSION_DECAY ** k for k in range(1, EXPLOSION_WARM_UP + 1)]  # the ones, decayed
    assert watch.check(100.0) == pytest.approx((sum(older) + 9) / (sum(older) + 1))
    assert watch.check(1e6) is None   # once only
    off = ExplosionWatch(0)
    assert all(off.check(v) is None for v in [1.0] * 20 + [1e9])


def test_ordinary_training_does_not_warn(tmp_path):
    logged: list[str] = []
    Solver(load_solver(project(tmp_path, TINY, max_iter=60, debug_info=False)),
           log=logged.append).solve()
    assert not any("loss_explosion_factor" in line for line in logged)


@pytest.mark.gpu
def test_gpu_figures_match_the_cpu_between_graph_replays(tmp_path, gpu_device):
    """On a GPU the iterations between displays replay captured graphs; a display iteration runs
    eagerly, step by step, and shows the same figures as the CPU."""
    (tmp_path / "cpu").mkdir()
    (tmp_path / "gpu").mkdir()
    cpu = Solver(load_solver(project(tmp_path / "cpu", DEEP, max_iter=7, display=3)))
    cpu.solve()
    gpu = Solver(load_solver(project(tmp_path / "gpu", DEEP, max_iter=7, display=3)), gpu_device)
    gpu.solve()
    assert gpu.graph and set(gpu._graphs) == {"pass", "update"}
    found = {device: records(s, "debug_info") for device, s in (("cpu", cpu), ("gpu", gpu))}
    assert [r["iter"] for r in found["gpu"]] == [0, 3, 6]
    for a, b in zip(found["cpu"], found["gpu"]):
        for kind in ("forward", "backward", "update"):
            for f, g in zip(a[kind], b[kind]):
                assert {k: v for k, v in f.items() if k not in ("data", "diff")} == {
                    k: v for k, v in g.items() if k not in ("data", "diff")}
                for field in ("data", "diff"):
                    if field in f:
                        assert g[field] == pytest.approx(f[field], rel=1e-4, abs=1e-7), (kind, f, g)


def test_iter_size_shows_each_pass_in_turn(tmp_path):
    """Caffe's Net::Backward logs the norms at the end of each pass (the gradient summed so far),
    ForwardBackward's lines come before the iteration's line, [Update] after it."""
    logged: list[str] = []
    s = Solver(load_solver(project(tmp_path, TINY, iter_size=2, max_iter=1)), log=logged.append)
    s.solve()
    (record,) = records(s, "debug_info")
    assert [f["pass"] for f in record["forward"]] == [0] * 6 + [1] * 6
    kinds = [line.split("]")[0].strip() for line in lines(record)]
    # the fourth [Backward] of each pass is the norms' line
    assert kinds == (["[Forward"] * 6 + ["[Backward"] * 4 + ["[Forward"] * 6 + ["[Backward"] * 4
                     + ["[Update"] * 2)
    first, second = record["pass_norms"]
    assert record["norms"] == second and first["l1"][0] == second["l1"][0]
    assert second["l1"][1] > first["l1"][1]  # the sum of the two passes' gradients, so far
    at = logged.index(next(line for line in logged if line.startswith("Iteration 0")))
    shown = [line for line in logged if line.startswith("    [")]
    assert logged[at - 20:at] == shown[:20] and logged[at + 1:at + 3] == shown[20:]


def test_fused_layers_show_their_own_lines(tmp_path):
    """Caffe prints ip1's top before its in-place ReLU, then relu1's line with the value after
    it: debug_info compiles without fusion, so the figures are each layer's own."""
    logged: list[str] = []
    s = Solver(load_solver(project(tmp_path, FUSABLE, max_iter=1, display=1)), log=logged.append,
               compile_options={"reuse_memory": False})
    assert [step.name for step in s.net.plan.steps] == ["data", "ip1", "relu1", "loss"]
    w, b = (s.net.params.named()[k].copy() for k in ("ip1.0", "ip1.1"))
    s.step_once()
    x, t = s.net.data("x").copy(), s.net.data("t").copy()
    pre = x @ w.T + b
    post = np.maximum(pre, 0)
    m = lambda a: float(np.abs(np.asarray(a, np.float64)).mean())
    assert m(pre) != pytest.approx(m(post))  # the ReLU changes something here
    forward = {(f["layer"], f.get("top", f.get("param"))): f["data"]
               for f in s.figures.record()["forward"]}
    assert forward[("ip1", "ip1")] == pytest.approx(m(pre), rel=1e-5)
    assert forward[("relu1", "ip1")] == pytest.approx(m(post), rel=1e-5)
    dpost = (post - t) / 4
    dpre = dpost * (pre > 0)
    backward = {(f["layer"], f.get("bottom", f.get("param"))): f["diff"]
                for f in s.figures.record()["backward"]}
    assert backward[("loss", "ip1")] == pytest.approx(m(dpost), rel=1e-5)
    assert backward[("relu1", "ip1")] == pytest.approx(m(dpre), rel=1e-5)
    assert backward[("ip1", 0)] == pytest.approx(m(dpre.T @ x), rel=1e-5)
    assert f"    [Forward] Layer ip1, top blob ip1 data: {m(pre):.6g}" in logged
    assert f"    [Forward] Layer relu1, top blob ip1 data: {m(post):.6g}" in logged
    assert f"    [Backward] Layer relu1, bottom blob ip1 diff: {m(dpre):.6g}" in logged
    # without debug_info the plan fuses as before
    off = Solver(load_solver(project(tmp_path, FUSABLE, debug_info=False)))
    assert [step.name for step in off.net.plan.steps] == ["data", "ip1", "loss"]


def test_a_folded_scale_shows_its_own_lines(tmp_path):
    s = Solver(load_solver(project(tmp_path, BN_SCALE, max_iter=1, display=1)))
    assert [step.name for step in s.net.plan.steps] == ["data", "bn", "scale", "loss"]
    s.step_once()
    layers = {f["layer"] for f in s.figures.record()["forward"]}
    assert {"bn", "scale"} <= layers
    off = Solver(load_solver(project(tmp_path, BN_SCALE, debug_info=False)))
    assert "scale" not in [step.name for step in off.net.plan.steps]


def test_a_resumed_run_watches_from_its_restored_window(tmp_path):
    """The watch starts from the snapshot's smoothed-loss window, not blind for the first
    EXPLOSION_WARM_UP iterations after a resume: the growing loss warns at once."""
    first = Solver(load_solver(project(tmp_path, GROWING, base_lr=1.0, max_iter=12, display=0,
                                       debug_info=False, average_loss=4, loss_explosion_factor=0,
                                       snapshot_after_train=True)))
    first.solve()
    state = next(tmp_path.glob("run_iter_12.solverstate*"))
    logged: list[str] = []
    resumed = Solver(load_solver(project(tmp_path, GROWING, base_lr=1.0, max_iter=14, display=0,
                                         debug_info=False, average_loss=4)), log=logged.append)
    resumed.restore(state)
    assert list(resumed.losses) == list(first.losses)
    resumed.solve()
    warned = [line for line in logged if "loss_explosion_factor" in line]
    assert len(warned) == 1 and warned[0].startswith("Iteration 12: Warning: the loss"), logged


def test_explosion_watch_seed():
    watch = ExplosionWatch(10)
    watch.seed([], 50)  # nothing to start from: still warming up
    assert watch.seen == 0
    watch.seed([1.0, 1.0, float("nan")], 50)
    assert watch.seen == 50 and watch.check(20.0) == pytest.approx(1.0)
    short = ExplosionWatch(10)
    short.seed([1.0], 3)  # three iterations trained: seven more before a comparison
    assert [short.check(1.0) for _ in range(EXPLOSION_WARM_UP - 3)] == [None] * 7
    assert short.check(100.0) is not None


@pytest.mark.parametrize("base_lr, where", [
    (1e37, "first non-finite: layer 'loss' (EuclideanLoss) forward"),   # finite weights, loss inf
    (1e39, "the weights of layer 'ip' (blob 0) are not finite, made so by the update of iteration 0"),
])
def test_the_final_display_checks_its_loss(tmp_path, base_lr, where):
    """The last update leaves weights whose loss is not finite: the display forward at the end
    of the run reports it as an iteration's divergence would, not as 'loss = inf'."""
    logged: list[str] = []
    s = Solver(load_solver(project(tmp_path, GROWING, base_lr=base_lr, max_iter=1, display=1,
                                   debug_info=False)), log=logged.append)
    with pytest.raises(Diverged) as exc:
        s.solve()
    message = str(exc.value)
    assert len(message.splitlines()) == 1 and message.startswith("iteration 1: the loss is ")
    assert where in message, message
    assert not any(line.startswith("Iteration 1, loss") for line in logged)
    assert "Optimization Done." not in logged


def test_the_display_line_says_the_speed_and_the_time(tmp_path):
    """From the second display on: 'Iteration N (x iter/s, t s), loss = ...', t the seconds
    since the run started; the text-log reader of `trainnet plot` still reads the loss."""
    import re

    from trainnet.tools.plot_caffe import read_caffe_text

    logged: list[str] = []
    Solver(load_solver(project(tmp_path, TINY, max_iter=5, debug_info=False)),
           log=logged.append).solve()
    shown = [line for line in logged if re.match(r"Iteration \d+[ ,]", line) and "lr = " in line]
    assert shown[0].startswith("Iteration 0, loss = ")
    for line in shown[1:]:
        assert re.fullmatch(r"Iteration \d+ \(\d+\.\d iter/s, \d+\.\d s\), loss = \S+, lr = \S+",
                            line), line
    run = read_caffe_text(tmp_path / "log.txt", "\n".join(logged) + "\n")
    assert sorted(run.train) == [0, 2, 4]
