"""The shipped CIFAR-10 configs: quick and full compile with Caffe's shapes from the binary
batches, and short runs of quick learn, from the batches and from a folder of PNG images
(the ImageData example).  The full 5,000-iteration run is in benchmarks/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainnet.data.cifar_images import export_cifar10_images
from trainnet.netcfg import load_net, load_solver_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.solver.solver import Solver

CONFIGS = Path(__file__).resolve().parents[1] / "configs/cifar10"
RECORD = 3073


@pytest.mark.parametrize("name, params, shapes", [
    ("cifar10_quick_train_test.yaml", 145578, {"data": (100, 3, 32, 32), "pool3": (100, 64, 4, 4)}),
    ("cifar10_full_train_test.yaml", 89578, {"data": (100, 3, 32, 32), "pool3": (100, 64, 4, 4)}),
    ("cifar10_quick_images_train_test.yaml", 116906, {"data": (100, 3, 28, 28),
                                                      "pool3": (100, 64, 3, 3)}),
])
def test_configs_compile(name, params, shapes, cifar_dir, tmp_path, monkeypatch):
    if "images" in name:  # its lists, made from a few records
        monkeypatch.setenv("TRAINNET_DATA", str(small_images(cifar_dir, tmp_path, 10)))
    else:
        monkeypatch.setenv("TRAINNET_DATA", str(cifar_dir.parent))
    for phase in ("TRAIN", "TEST"):
        plan = compile_net(load_net(CONFIGS / name), phase)
        assert plan.learned_count == params
        for blob, shape in shapes.items():
            assert plan.blob(blob).shape == shape


def short_run(net: Path, iterations: int, test_iter: int) -> tuple[Solver, list[float]]:
    """Caffe's quick schedule, cut short: ``iterations`` at base_lr 0.001, then a test."""
    text = (f"net: {net}\ntest_iter: {test_iter}\ntest_interval: {iterations}\nbase_lr: 0.001\n"
            f"momentum: 0.9\nweight_decay: 0.004\nlr_policy: fixed\ndisplay: 1\n"
            f"max_iter: {iterations}\nsnapshot_after_train: false\nrandom_seed: 1\n"
            "test_initialization: false\n")
    lines: list[str] = []
    solver = Solver(load_solver_text(text, "short.yaml"), CPU, log=lines.append)
    losses = []
    while solver.iter < iterations:
        solver.step_once()
        losses.append(solver.losses[-1])
    solver.test_all()
    return solver, losses


def test_quick_learns_from_the_binary_batches(cifar_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINNET_DATA", str(cifar_dir.parent))
    monkeypatch.chdir(tmp_path)
    solver, losses = short_run(CONFIGS / "cifar10_quick_train_test.yaml", 60, 5)
    assert losses[0] == pytest.approx(2.3026, abs=2e-3)  # ln 10: the tiny conv1 filler
    assert np.mean(losses[-10:]) < 2.1
    assert solver.last_test["accuracy"] >= 0.25  # chance is 0.1


def small_images(cifar_dir: Path, tmp_path: Path, per_file: int) -> Path:
    """A data root whose cifar10_images/ holds the first ``per_file`` images of every batch
    as PNGs with their lists, written by `trainnet data cifar10 --images`'s own function."""
    batches = tmp_path / "batches"
    batches.mkdir(exist_ok=True)
    for f in cifar_dir.glob("*_batch*.bin"):
        (batches / f.name).write_bytes(f.read_bytes()[:per_file * RECORD])
    (batches / "batches.meta.txt").write_bytes((cifar_dir / "batches.meta.txt").read_bytes())
    root = tmp_path / "root"
    if not (root / "cifar10_images").exists():
        export_cifar10_images(batches, root / "cifar10_images")
    return root


def test_the_images_example_learns(cifar_dir, tmp_path, monkeypatch):
    """The ImageData example: PNGs and lists as `trainnet data cifar10 --images` writes them,
    read with random crops and mirrors by two workers."""
    monkeypatch.setenv("TRAINNET_DATA", str(small_images(cifar_dir, tmp_path, 400)))
    monkeypatch.chdir(tmp_path)
    solver, losses = short_run(CONFIGS / "cifar10_quick_images_train_test.yaml", 60, 4)
    assert np.mean(losses[-10:]) < 2.15
    assert solver.last_test["accuracy"] >= 0.2
