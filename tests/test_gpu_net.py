"""Whole nets on the GPU path: training equals the CPU, graph replay equals eager launches,
snapshots resume exactly, and (on a real GPU) LeNet learns MNIST."""

import numpy as np
import pytest

from synthetic import write_project
from trainnet.netcfg import load_solver
from trainnet.plan import compile_net
from trainnet.netcfg import load_net
from trainnet.runtime.device import CPU
from trainnet.solver.solver import Solver

from gpu_check import relative_error


def train(solver_path, device, iterations, graph=True, state=None):
    s = Solver(load_solver(solver_path), device, graph=graph)
    if state:
        s.restore(state)
    losses = []
    while s.iter < iterations:
        s.step_once()
        losses.append(s.losses[-1])
    return s, np.array(losses)


@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path, max_iter=60)


def test_training_matches_the_cpu(project, gpu_device):
    cpu, cpu_losses = train(project, CPU, 40)
    gpu, gpu_losses = train(project, gpu_device, 40)
    assert relative_error(gpu_losses, cpu_losses) < 1e-4
    for key, want in cpu.net.params.named_host().items():
        assert relative_error(gpu.net.params.named_host()[key], want) < 1e-3, key
    assert gpu.test_all()["accuracy"] == pytest.approx(cpu.test_all()["accuracy"], abs=1 / 128)


def test_graph_replay_equals_eager_launches(project, gpu_device):
    eager, eager_losses = train(project, gpu_device, 30, graph=False)
    graph, graph_losses = train(project, gpu_device, 30, graph=True)
    assert graph._graphs and all(g is not None for g in graph._graphs.values())
    np.testing.assert_array_equal(graph_losses, eager_losses)
    for key, want in eager.net.params.named_host().items():
        np.testing.assert_array_equal(graph.net.params.named_host()[key], want)
    assert graph.test_all() == eager.test_all()


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_iter_size_and_other_rules_match_the_cpu(tmp_path, gpu_device, solver_type):
    solver = write_project(tmp_path)
    text = solver.read_text().replace("momentum: 0.9", "momentum: 0.9\niter_size: 2\n"
                                      f"type: {solver_type}\nclip_gradients: 1.0")
    solver.write_text(text)
    _, cpu_losses = train(solver, CPU, 12)
    _, gpu_losses = train(solver, gpu_device, 12)
    assert relative_error(gpu_losses, cpu_losses) < 1e-4


def test_snapshot_resume_is_exact_on_the_gpu(tmp_path, gpu_device):
    solver = write_project(tmp_path, max_iter=40)
    whole, whole_losses = train(solver, gpu_device, 40)
    first, _ = train(solver, gpu_device, 20)
    state = first.snapshot()
    resumed, resumed_losses = train(solver, gpu_device, 40, state=state)
    np.testing.assert_array_equal(resumed_losses, whole_losses[20:])
    for key, want in whole.net.params.named_host().items():
        np.testing.assert_array_equal(resumed.net.params.named_host()[key], want)


def test_a_gpu_snapshot_resumes_on_the_cpu(tmp_path, gpu_device):
    solver = write_project(tmp_path, max_iter=30)
    _, cpu_losses = train(solver, CPU, 30)
    first, _ = train(solver, gpu_device, 15)
    resumed, losses = train(solver, CPU, 30, state=first.snapshot())
    assert relative_error(losses, cpu_losses[15:]) < 1e-3


def test_plan_fuses_relu_into_the_layer_before(project):
    plan = compile_net(load_net(project.parent / "net.yaml"), "TRAIN")
    ip1 = next(s for s in plan.steps if s.name == "ip1")
    assert ip1.fused == ["relu1"] and "relu1" not in [s.name for s in plan.steps]
    assert [s.index for s in plan.steps] == list(range(len(plan.steps)))


def test_fused_and_unfused_training_agree(project, monkeypatch):
    from trainnet.solver import solver as solver_module
    _, fused = train(project, CPU, 20)
    real = solver_module.compile_net
    monkeypatch.setattr(solver_module, "compile_net", lambda *a, **k: real(*a, fuse=False, **k))
    _, unfused = train(project, CPU, 20)
    np.testing.assert_allclose(fused, unfused, rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.slow
def test_lenet_learns_mnist_on_a_real_gpu(mnist_dir, tmp_path):
    from trainnet.runtime.device import get_device, gpu_count
    if not gpu_count():
        pytest.skip("no CUDA GPU here (CuPy missing or no device)")
    import yaml
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "configs/lenet"
    cfg = yaml.safe_load((root / "lenet_solver.yaml").read_text())
    cfg.update(net=str(root / "lenet_train_test.yaml"), snapshot_prefix=str(tmp_path / "lenet"),
               snapshot=0, snapshot_after_train=False)
    (tmp_path / "solver.yaml").write_text(yaml.safe_dump(cfg))
    s = Solver(load_solver(tmp_path / "solver.yaml"), get_device("cuda"))
    result = s.solve()
    assert result["accuracy"] >= 0.990


@pytest.mark.gpu
def test_lenet_on_the_gpu_path_matches_the_cpu(mnist_dir, gpu_device, tmp_path, monkeypatch):
    """The shipped LeNet: 20 iterations and a test pass agree with the CPU reference."""
    import yaml
    from pathlib import Path
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    root = Path(__file__).resolve().parents[1] / "configs/lenet"
    cfg = yaml.safe_load((root / "lenet_solver.yaml").read_text())
    cfg.update(net=str(root / "lenet_train_test.yaml"), snapshot_prefix=str(tmp_path / "lenet"),
               test_iter=[2], test_interval=1000)
    (tmp_path / "solver.yaml").write_text(yaml.safe_dump(cfg))
    cpu, cpu_losses = train(tmp_path / "solver.yaml", CPU, 20)
    gpu, gpu_losses = train(tmp_path / "solver.yaml", gpu_device, 20)
    assert relative_error(gpu_losses, cpu_losses) < 1e-4
    assert gpu.test_all()["accuracy"] == pytest.approx(cpu.test_all()["accuracy"], abs=0.011)


def test_a_layer_without_a_gpu_pass_is_refused_by_name(project, gpu_device, monkeypatch):
    from trainnet.errors import TrainnetError
    from trainnet.layers.base import Layer
    from trainnet.layers.pooling import Pooling
    monkeypatch.setattr(Pooling, "forward_gpu", Layer.forward_gpu)
    with pytest.raises(TrainnetError, match="Pooling has no GPU implementation yet"):
        Solver(load_solver(project), gpu_device)
