"""Divergence on the CPU and on the (emulated) GPU: training stops before an update that would
spoil the weights, says where the first NaN or infinity appeared, and snapshots the state the
failed iteration started from, which resumes; a test net's non-finite output is logged and
training goes on; a log that fails mid-run leaves a snapshot that resumes exactly."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from synthetic import write_project
from trainnet.errors import TrainnetError
from trainnet.netcfg import load_solver
from trainnet.runtime.device import CPU
from trainnet.solver import snapshot as snap
from trainnet.solver.solver import Solver

H5_NET = """name: H
layer:
  - {name: h, type: HDF5Data, top: [data, label], source: list.txt, batch_size: 16}
%s
"""


def h5_project(folder: Path, layers: str, poison: float = np.nan, test: str = "") -> Path:
    """A net over 64 rows of HDF5 data whose row 37 (in batch 2) holds ``poison``."""
    x = np.random.default_rng(0).random((64, 1, 4, 4), dtype=np.float32)
    x[37, 0, 1, 2] = poison
    with h5py.File(folder / "d.h5", "w") as f:
        f["data"], f["label"] = x, (np.arange(64) % 3).astype(np.float32)
    (folder / "list.txt").write_text(f"{folder / 'd.h5'}\n")
    (folder / "net.yaml").write_text(H5_NET % layers)
    (folder / "solver.yaml").write_text(f"net: net.yaml\nbase_lr: 0.1\nmax_iter: 10\n{test}"
                                        f"snapshot_prefix: {folder}/run\nrandom_seed: 1\n")
    return folder / "solver.yaml"


IP_SOFTMAX = """  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 3,
     weight_filler: {type: xavier}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}"""

# weights 0, then sqrt: the loss is finite, its gradient at 0 is infinite
SQRT_OF_ZERO = """  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 1}
  - {name: root, type: Power, bottom: ip, top: root, power: 0.5}
  - {name: loss, type: EuclideanLoss, bottom: [root, label], top: loss}"""


@pytest.fixture(params=["cpu", pytest.param("emulated-gpu", marks=pytest.mark.gpu)])
def device(request):
    """The CPU, and the GPU path through the emulated backend (as the gpu_device fixture)."""
    if request.param == "cpu":
        return CPU
    from emulation.backend import EmulatedBackend, compiler
    from trainnet.runtime.device import GpuDevice

    if not compiler():
        pytest.skip("no GCC C++ compiler for the emulated GPU")
    return GpuDevice(EmulatedBackend(), "cuda:emulated")


def solve(solver: Path, device) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning on the way
        with pytest.raises(TrainnetError) as exc:
            Solver(load_solver(solver), device).solve()
    assert len(str(exc.value).splitlines()) == 1
    return str(exc.value)


def resumable(state: Path, solver: Path, device) -> Solver:
    weights = snap.read_tensors(state.with_suffix(".safetensors"), "weights")
    assert all(np.isfinite(w).all() for w in weights.values())
    s = Solver(load_solver(solver), device)
    s.restore(state)
    return s


def test_a_nan_in_the_data_stops_at_its_batch(tmp_path, device):
    solver = h5_project(tmp_path, IP_SOFTMAX)
    message = solve(solver, device)
    assert "iteration 2: the loss is nan (diverged)" in message
    assert "first non-finite: layer 'h' (HDF5Data) forward: its top 'data'" in message
    state = tmp_path / "run_iter_2.solverstate"
    assert str(state) in message
    with pytest.raises(TrainnetError, match="iteration 2: the loss is nan"):
        resumable(state, solver, device).solve()  # the same batch again: the state before it


def test_a_non_finite_gradient_under_a_finite_loss(tmp_path, device):
    solver = h5_project(tmp_path, SQRT_OF_ZERO, poison=0.5)
    message = solve(solver, device)
    assert "iteration 0: a gradient is not finite (diverged)" in message
    assert "layer 'root' (Power) backward: the gradient of its bottom 'ip'" in message
    resumable(tmp_path / "run_iter_0.solverstate", solver, device)


def test_a_large_rate_on_the_cpu(tmp_path):
    solver = write_project(tmp_path, max_iter=50)
    solver.write_text(solver.read_text().replace("base_lr: 0.05", "base_lr: 1000000"))
    message = solve(solver, CPU)
    assert "iteration 2: the loss is nan (diverged)" in message
    assert "first non-finite: layer 'ip2' (InnerProduct) forward: its top 'ip2'" in message
    with pytest.raises(TrainnetError, match="iteration 2: the loss is nan"):
        resumable(tmp_path / "out/tiny_iter_2.solverstate", solver, CPU).solve()


def test_an_update_that_overflows_leaves_no_false_snapshot(tmp_path):
    layers = IP_SOFTMAX.replace("num_output: 3,", "num_output: 3, param: [{lr_mult: 1000}],")
    solver = h5_project(tmp_path, layers, poison=0.5)
    solver.write_text(solver.read_text().replace("base_lr: 0.1", "base_lr: 3e38"))  # a step past FLT_MAX
    message = solve(solver, CPU)
    assert "the weights of layer 'ip'" in message and "made so by the update of iteration" in message
    assert "no snapshot written" in message and not list(tmp_path.glob("run_iter_*"))


def test_a_non_finite_test_output_is_logged_and_training_goes_on(tmp_path):
    solver = h5_project(tmp_path, IP_SOFTMAX, poison=np.inf,
                        test="test_iter: 4\ntest_interval: 5\n")
    solver.write_text(solver.read_text().replace("base_lr: 0.1", "base_lr: 0.0"))  # no NaN in training
    lines = []
    net = tmp_path / "net.yaml"
    net.write_text(net.read_text().replace("batch_size: 16}", "batch_size: 16, include: {phase: TRAIN}}")
                   .replace("layer:\n", "layer:\n  - {name: t, type: HDF5Data, top: [data, label], "
                            "source: list.txt, batch_size: 16, include: {phase: TEST}}\n"))
    s = Solver(load_solver(solver), log=lines.append)
    with pytest.raises(TrainnetError, match="loss is nan"):  # the training batch 2 holds inf too
        s.solve()
    assert any("Testing net (#0): net 'H': output 'loss' is not finite" in line for line in lines)


def test_a_log_failing_mid_run_snapshots_a_state_that_resumes_exactly(tmp_path):
    straight = write_project(tmp_path / "a", max_iter=6)
    for path in (straight,):
        path.write_text(path.read_text().replace("test_iter: 4\n", "").replace("test_interval: 50\n", ""))
    Solver(load_solver(straight)).solve()
    broken = write_project(tmp_path / "b", max_iter=6)
    broken.write_text(straight.read_text().replace(str(tmp_path / "a"), str(tmp_path / "b")))
    (tmp_path / "b/out").mkdir()
    (tmp_path / "b/out/tiny_log.jsonl").symlink_to("/dev/full")
    with pytest.raises(TrainnetError, match="stopped at iteration 1 after a snapshot"):
        Solver(load_solver(broken)).solve()
    (tmp_path / "b/out/tiny_log.jsonl").unlink()
    s = Solver(load_solver(broken))
    s.restore(tmp_path / "b/out/tiny_iter_1.solverstate")
    s.solve()
    a = snap.read_tensors(tmp_path / "a/out/tiny_iter_6.safetensors", "weights")
    b = snap.read_tensors(tmp_path / "b/out/tiny_iter_6.safetensors", "weights")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
