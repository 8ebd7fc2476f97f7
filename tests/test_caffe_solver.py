"""pycaffe's solvers (trainnet.caffe.get_solver, SGDSolver ...): step, solve, snapshot and
restore, callbacks, apply_update, and the nets a script reads between steps."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic import write_project
from trainnet import caffe


def test_step_trains_and_every_blob_is_readable(tmp_path, capsys):
    solver = caffe.get_solver(str(write_project(tmp_path, max_iter=200)))
    assert solver.iter == 0 and len(solver.test_nets) == 1
    solver.step(1)
    first = float(solver.net.blobs["loss"].data)
    conv1 = solver.net.blobs["conv1"].data
    assert conv1.shape == (16, 4, 6, 6) and np.abs(conv1).sum() > 0   # not reused by later layers
    solver.step(120)
    assert solver.iter == 121
    losses = []
    for _ in range(10):
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    assert np.mean(losses) < 0.6 * first
    solver.test_nets[0].forward()
    assert solver.test_nets[0].blobs["accuracy"].data > 0.6
    # a test net shares the training net's weights
    np.testing.assert_array_equal(solver.test_nets[0].params["ip2"][0].data,
                                  solver.net.params["ip2"][0].data)
    assert "Iteration 130" in capsys.readouterr().err


def test_callbacks_run_around_each_iteration(tmp_path):
    solver = caffe.SGDSolver(str(write_project(tmp_path)))
    calls = []
    solver.add_callback(lambda: calls.append(("start", solver.iter)),
                        lambda: calls.append(("gradients", float(np.abs(
                            solver.net.params["ip2"][0].diff).sum()) > 0)))

    class Both:
        def on_start(self):
            calls.append("object")

        def on_gradients(self):
            pass

    solver.add_callback(Both())
    solver.step(2)
    assert calls == [("start", 0), "object", ("gradients", True), ("start", 1), "object",
                     ("gradients", True)]


def test_snapshot_restore_and_solve_resume_exactly(tmp_path):
    path = write_project(tmp_path, max_iter=40)
    full = caffe.get_solver(str(path))
    full.solve()
    expected = full.net.params["ip1"][0].data.copy()
    half = caffe.get_solver(str(path))
    half.step(20)
    state = half.snapshot()
    assert state.name == "tiny_iter_20.solverstate"
    resumed = caffe.get_solver(str(path))
    resumed.solve(str(state))
    assert resumed.iter == 40
    np.testing.assert_array_equal(resumed.net.params["ip1"][0].data, expected)
    again = caffe.get_solver(str(path))
    again.restore(str(state))
    assert again.iter == 20


def test_apply_update_is_one_sgd_step_without_counting(tmp_path):
    solver = caffe.SGDSolver(str(write_project(tmp_path)))
    net = solver.net
    net.forward()
    net.backward()
    w = net.params["ip2"][0].data.copy()
    g = net.params["ip2"][0].diff.copy()
    solver.apply_update()
    # iteration 0 of the inv policy: lr = base_lr; momentum history starts at zero
    want = w - 0.05 * (g + 0.0005 * w)
    np.testing.assert_allclose(net.params["ip2"][0].data, want, rtol=1e-5, atol=1e-7)
    assert solver.iter == 0


@pytest.mark.parametrize("cls, kind", [(caffe.AdamSolver, "Adam"), (caffe.NesterovSolver, "Nesterov"),
                                       (caffe.SGDSolver, "SGD")])
def test_typed_solvers_use_their_rule(tmp_path, cls, kind):
    solver = cls(str(write_project(tmp_path)))
    assert solver.param.type == kind
    solver.step(2)
    assert solver.iter == 2


def test_a_solvers_net_is_not_replanned_behind_its_back(tmp_path):
    solver = caffe.get_solver(str(write_project(tmp_path)))
    with pytest.raises(Exception, match="run by a Solver"):
        solver.test_nets[0].share_with(solver.net)
