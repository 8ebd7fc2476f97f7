"""The `trainnet` command: train, test, plan, time, data; user errors exit 1 with one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from synthetic import write_project
from trainnet.cli import main

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "configs/lenet"


def run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def test_train_then_test_then_finetune(tmp_path):
    code, out = run("train", write_project(tmp_path, max_iter=120, snapshot=60))
    assert code == 0, out
    assert "Iteration 100 (" in out and "Optimization Done." in out
    weights = tmp_path / "out/tiny_iter_120.safetensors"
    code, out = run("test", "--model", tmp_path / "net.yaml", "--weights", weights, "--iterations", 4)
    assert code == 0, out
    accuracy = float(re.search(r"accuracy = ([\d.]+)", out).group(1))
    assert accuracy >= 0.9
    code, out = run("train", tmp_path / "solver.yaml", "--weights", weights)
    assert code == 0 and "Loaded weights for 3 layers" in out
    code, out = run("train", tmp_path / "solver.yaml", "--snapshot", tmp_path / "out/tiny_iter_60.solverstate")
    assert code == 0 and "Resumed from" in out and "iterations 60 -> 120" in out


@pytest.mark.parametrize("args, message", [
    (["train", "missing.yaml"], "error: missing.yaml: no such config file"),
    (["plan", "missing.yaml"], "error: missing.yaml: no such config file"),
    (["train", "SOLVER", "--device", "tpu"], "error: unknown device 'tpu'"),
    (["test", "--model", "NET", "--weights", "nowhere.safetensors"], "no such weights file"),
])
def test_user_errors_are_one_line(tmp_path, args, message):
    solver = write_project(tmp_path, max_iter=1)
    args = [str(solver) if a == "SOLVER" else str(tmp_path / "net.yaml") if a == "NET" else a for a in args]
    code, out = run(*args)
    assert code == 1
    assert message in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_config_error_names_file_line_layer(tmp_path):
    net = tmp_path / "net.yaml"
    net.write_text("name: x\nlayer:\n  - {name: in, type: Input, top: data, shape: {dim: [1, 1, 4, 4]}}\n"
                   "  - name: conv1\n    type: Convolution\n    bottom: data\n    top: conv1\n"
                   "    num_output: 2\n    kernel_size: 0\n")
    code, out = run("plan", net)
    assert code == 1
    assert out.strip() == f"error: {net}:9: layer 'conv1' (Convolution): kernel_size: must be >= 1, got 0"


def test_plan_shows_memory_saving_of_forward_only(mnist_dir):
    code, train = run("plan", LENET / "lenet_train_test.yaml", env={"TRAINNET_DATA": str(mnist_dir.parent)})
    assert code == 0, train
    assert "fused relu1" in train and "431,080" in train
    code, test = run("plan", LENET / "lenet_train_test.yaml", "--phase", "TEST",
                     env={"TRAINNET_DATA": str(mnist_dir.parent)})
    assert code == 0 and "accuracy" in test and "inserted split" in test

    def mib(label):
        value, unit = re.search(label + r"\s+([\d.]+) (MiB|KiB)", train).groups()
        return float(value) * (1 if unit == "MiB" else 1 / 1024)

    # Without backward nothing is kept for it: a fraction of the training plan's memory.
    assert mib("forward only:.*arena") < 0.5 * mib("activation arena:")


def test_time_prints_every_layer(tmp_path):
    write_project(tmp_path)
    code, out = run("time", tmp_path / "net.yaml", "--iterations", 2)
    assert code == 0, out
    for layer in ("conv1", "pool1", "ip1", "loss"):
        # name, type, forward ms, backward ms, share % (more in tests/test_time_cli.py)
        assert re.search(rf"^{layer}\s+\w+\s+[\d.]+\s+[\d.]+\s+[\d.]+", out, re.M)


def test_data_mnist_from_a_mirror(tmp_path, mnist_dir):
    code, out = run("data", "mnist", "--dest", tmp_path, "--mirror", mnist_dir.as_uri() + "/")
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(
        p.name for p in mnist_dir.glob("*-ubyte.gz"))


def test_data_mnist_without_network_says_what_to_do(tmp_path):
    code, out = run("data", "mnist", "--dest", tmp_path, "--mirror", "http://127.0.0.1:9/")
    assert code == 1
    assert "TRAINNET_DATA" in out


def lenet_solver(tmp_path, **fields) -> Path:
    """The shipped LeNet solver with some fields changed, written to ``tmp_path``."""
    cfg = yaml.safe_load((LENET / "lenet_solver.yaml").read_text())
    cfg.update(net=str(LENET / "lenet_train_test.yaml"), snapshot_prefix=str(tmp_path / "lenet"), **fields)
    solver = tmp_path / "solver.yaml"
    solver.write_text(yaml.safe_dump(cfg))
    return solver


def test_lenet_example_learns(tmp_path, mnist_dir):
    """A short run of the shipped LeNet solver: accuracy on 3,000 test images after 300 steps."""
    solver = lenet_solver(tmp_path, max_iter=300, test_iter=30, test_interval=300, snapshot=0, display=50)
    code, out = run("train", solver, env={"TRAINNET_DATA": str(mnist_dir.parent)})
    assert code == 0, out
    accuracies = [float(a) for a in re.findall(r"accuracy = ([\d.]+)", out)]
    assert accuracies[0] < 0.3 and accuracies[-1] >= 0.95


def test_lenet_resume_is_bit_exact(tmp_path, mnist_dir):
    """40 iterations straight equal 20, then `--snapshot` and 20 more, weight for weight."""
    from trainnet.solver.snapshot import read_tensors

    env = {"TRAINNET_DATA": str(mnist_dir.parent)}
    solver = lenet_solver(tmp_path, max_iter=40, snapshot=20, test_interval=0, test_iter=[], display=0)
    assert run("train", solver, env=env)[0] == 0
    straight = read_tensors(tmp_path / "lenet_iter_40.safetensors", "weights")
    (tmp_path / "lenet_iter_40.safetensors").unlink()
    code, out = run("train", solver, "--snapshot", tmp_path / "lenet_iter_20.solverstate", env=env)
    assert code == 0 and "Resumed from" in out, out
    resumed = read_tensors(tmp_path / "lenet_iter_40.safetensors", "weights")
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert (resumed[key] == straight[key]).all(), key


def test_ctrl_c_snapshots_and_exits(tmp_path):
    solver = write_project(tmp_path, max_iter=100000)
    proc = subprocess.Popen([sys.executable, "-m", "trainnet.cli", "train", str(solver)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if " Iteration 20 " in line:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Snapshotting to" in out
    assert list((tmp_path / "out").glob("tiny_iter_*.solverstate"))


def test_plan_for_the_gpu_keeps_fewer_buffers(mnist_dir):
    env = {"TRAINNET_DATA": str(mnist_dir.parent)}
    code, cpu = run("plan", LENET / "lenet_train_test.yaml", env=env)
    code_gpu, gpu = run("plan", LENET / "lenet_train_test.yaml", "--gpu", env=env)
    assert code == 0 and code_gpu == 0, gpu

    def arena(text):
        value, unit = re.search(r"activation arena:\s+([\d.]+) (MiB|KiB)", text).groups()
        return float(value) * (1 if unit == "MiB" else 1 / 1024)

    assert arena(gpu) < arena(cpu)


def test_plan_as_python_keeps_every_blob_and_keep_names_blobs(tmp_path):
    net = tmp_path / "net.yaml"
    net.write_text("name: x\nlayer:\n  - {name: in, type: Input, top: data, shape: {dim: [2, 3]}}\n"
                   "  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 4}\n"
                   "  - {name: relu1, type: ReLU, bottom: ip1, top: r1}\n"
                   "  - {name: ip2, type: InnerProduct, bottom: r1, top: ip2, num_output: 2}\n")
    code, packed = run("plan", net, "--phase", "TEST")
    assert code == 0 and "fused relu1" in packed
    code, python = run("plan", net, "--phase", "TEST", "--python")
    assert code == 0 and "fused" not in python, python
    assert "packed (trainnet train): arena" in python
    code, kept = run("plan", net, "--phase", "TEST", "--keep", "nope")
    assert code == 1 and "keep: no blob 'nope' in the TEST net" in kept
