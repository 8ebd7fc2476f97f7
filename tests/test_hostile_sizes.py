"""Huge sizes: shapes, counts and bytes are exact Python integers through the plan (no int64
wrap), integer fields beyond caffe.proto's types are refused, and a net larger than the memory
available is refused before anything is allocated, in one line with the plan's figure, its
largest blob and that blob's layer, and how much is free; an allocation that still fails is one
line too.  The free figure is injected (TRAINNET_MEMORY_AVAILABLE) so that the cases do not
depend on this machine."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hostile import assert_one_error, cli, run_process
from synthetic import write_project
from trainnet.errors import ConfigError, TrainnetError
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net, format_plan
from trainnet.runtime import memory
from trainnet.runtime.device import CPU, Device
from trainnet.runtime.net import Net

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30


def project(tmp_path: Path, old: str, new: str) -> Path:
    """The synthetic project with one edit to its net; returns the solver."""
    solver = write_project(tmp_path, max_iter=1)
    net = tmp_path / "net.yaml"
    text = net.read_text()
    assert old in text
    net.write_text(text.replace(old, new, 1))
    return solver


HUGE = [  # (id, edit to the synthetic net, fragments of the one line)
    ("num_output-1e9", ("num_output: 16,", "num_output: 1000000000,"),
     [":12: layer 'ip1' (InnerProduct): net 'Tiny' (TRAIN) needs 651.9 GiB",
      "parameters 152.7 GiB 3 times", "this machine has 1.0 GiB available",
      "largest blob is this layer's parameter 0, 1000000000x36 (134.1 GiB)"]),
    ("pad-10000", ("kernel_size: 3,", "kernel_size: 3, pad: 10000,"),
     [":9: layer 'conv1' (Convolution): net 'Tiny' (TRAIN) needs 241.5 GiB",
      "largest blob is this layer's top 'conv1', 16x4x20006x20006"]),
    ("batch-1e7", ("batch_size: 16,", "batch_size: 10000000,"),
     [":9: layer 'conv1' (Convolution): net 'Tiny' (TRAIN) needs 30.6 GiB", "1.0 GiB available"]),
]


@pytest.mark.parametrize("case", HUGE, ids=[c[0] for c in HUGE])
def test_a_net_beyond_the_free_memory_is_refused_before_allocating(tmp_path, monkeypatch, case):
    _, (old, new), fragments = case
    solver = project(tmp_path, old, new)

    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated before checking")

    monkeypatch.setattr(Device, "zeros", no_allocation)
    outcome = cli("train", solver, "--device", "cpu", env={memory.ENV: "1G"})
    net = tmp_path / "net.yaml"
    assert_one_error(outcome, *[f"{net}{f}" if f.startswith(":") else f for f in fragments])


def test_lenet_at_batch_60000_is_refused_naming_its_largest_blob(tmp_path, mnist_dir):
    text = (ROOT / "configs/lenet/lenet_train_test.yaml").read_text()
    (tmp_path / "net.yaml").write_text(text.replace("batch_size: 64", "batch_size: 60000"))
    solver = (ROOT / "configs/lenet/lenet_solver.yaml").read_text()
    (tmp_path / "solver.yaml").write_text(solver.replace("lenet_train_test.yaml", "net.yaml"))
    outcome = cli("train", tmp_path / "solver.yaml", "--device", "cpu",
                  env={memory.ENV: "8G", "TRAINNET_DATA": str(mnist_dir.parent)})
    assert_one_error(outcome, f"{tmp_path / 'net.yaml'}:38: layer 'conv2' (Convolution): net "
                     "'LeNet' (TRAIN) needs 12.7 GiB", "8.0 GiB available",
                     "this layer's buffer 'col', 1x500x3840000 (7.2 GiB)")


def test_integers_beyond_caffes_types_are_refused_where_written(tmp_path):
    for value, bits in ((2**61, 32), (2**31, 32), (10**30, 32)):
        solver = project(tmp_path / str(value), "num_output: 16,", f"num_output: {value},")
        outcome = cli("plan", solver.parent / "net.yaml")
        assert_one_error(outcome, f":12: layer 'ip1' (InnerProduct): num_output: {value} is out "
                         f"of range: Caffe's field is a {bits}-bit integer")


def test_the_largest_int32_sizes_print_exact_totals():
    """num_output at int32's limit: 2**31-1 x 36 weights, exact (int64 arithmetic held, but the
    counts past it must not wrap either: see the next test)."""
    text = ("name: big\nlayer:\n  - {name: data, type: Input, top: data, shape: {dim: [1, 36]}}\n"
            "  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 2147483647}\n")
    plan = compile_net(load_net_text(text, "big.yaml"), "TEST")
    count = (2**31 - 1) * 36 + (2**31 - 1)
    assert plan.param_count == count
    assert f"parameters:        {count:,} (" in format_plan(plan)


def test_blob_sizes_beyond_int64_are_exact_and_refused_before_allocating(monkeypatch):
    """A 64-bit dim (BlobShape's) times the others overflows int64: 2**62 x 4 x 4 bytes."""
    text = ("name: vast\nlayer:\n  - {name: data, type: Input, top: data, shape: {dim: [%d, 4]}}\n"
            "  - {name: relu, type: ReLU, bottom: data, top: out}\n" % 2**62)
    plan = compile_net(load_net_text(text, "vast.yaml"), "TEST")
    assert plan.blobs["data"].data.nbytes == 2**62 * 4 * 4 > 2**63
    assert plan.arena_bytes >= 2**66
    assert "EiB" in format_plan(plan)
    with pytest.raises(ConfigError, match=r"vast.yaml:3: layer 'data' \(Input\): net 'vast' "
                       r"\(TEST\) needs 144.0 EiB \(activations 144.0 EiB, no parameters\) but this machine "
                       r"has 1.0 KiB available; its largest blob is this layer's top 'data', "
                       r"4611686018427387904x4 \(64.0 EiB\)"):
        memory.check_fits(plan, CPU, available=1024)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    with pytest.raises(ConfigError, match="needs 144.0 EiB"):   # no figure: still refused
        Net(plan, CPU)


def test_the_check_counts_only_what_a_net_allocates(monkeypatch):
    text = ("name: n\nlayer:\n  - {name: data, type: Input, top: data, shape: {dim: [4, 100]}}\n"
            "  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 1000}\n")
    plan = compile_net(load_net_text(text, "n.yaml"), "TEST")
    activations, params, copies = memory.net_bytes(plan)
    assert activations == plan.arena_bytes and params == 4 * plan.param_arena and copies == 3
    need = activations + 3 * params
    memory.check_fits(plan, CPU, available=need)                  # exactly enough
    with pytest.raises(TrainnetError, match="parameter 0, 1000x100"):
        memory.check_fits(plan, CPU, available=need - 1)
    shared = Net(plan, CPU).params                                 # borrowed: not counted
    assert memory.net_bytes(plan, shared)[1] == 0


def test_a_gpu_is_checked_against_its_free_memory():
    text = ("name: n\nlayer:\n  - {name: data, type: Input, top: data, shape: {dim: [64, 1000]}}\n"
            "  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 1000}\n")
    plan = compile_net(load_net_text(text, "n.yaml"), "TEST", gpu=True)

    class Backend:
        def free_memory(self):
            return 2**20

    class FakeGpu:
        is_gpu, backend = True, Backend()

    assert memory.available_bytes(FakeGpu()) == 2**20
    with pytest.raises(ConfigError, match=r"parameters 3.8 MiB 2 times: data, gradient\) but the "
                       r"GPU has 1.0 MiB available"):
        memory.check_fits(plan, FakeGpu())


def test_the_free_figure_reads_and_parses(monkeypatch):
    assert memory.parse_bytes("4G") == 4 * GiB and memory.parse_bytes("512MiB") == 512 * 2**20
    assert memory.parse_bytes("1000") == 1000 and memory.parse_bytes("1.5k") == 1536
    with pytest.raises(TrainnetError, match="give bytes"):
        memory.parse_bytes("lots")
    monkeypatch.delenv(memory.ENV, raising=False)
    free = memory.available_bytes(CPU)
    assert free is None or 0 < free < 2**50


def test_an_allocation_that_fails_anyway_is_one_line(tmp_path, monkeypatch):
    solver = write_project(tmp_path, max_iter=1)

    def refuse(self, shape, dtype=np.float32):
        raise MemoryError("Unable to allocate 5.00 GiB for an array with shape (5368709120,) "
                          "and data type uint8")

    monkeypatch.setattr(Device, "zeros", refuse)
    outcome = cli("train", solver, "--device", "cpu")
    assert_one_error(outcome, "error: out of memory: Unable to allocate 5.00 GiB")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is Linux's")
def test_a_real_allocation_failure_in_a_process_is_one_line(tmp_path):
    """The check told to trust a large figure, the process held to 3 GiB of address space: NumPy's
    own MemoryError reaches the CLI, which prints one line."""
    solver = project(tmp_path, "batch_size: 16,", "batch_size: 1000000,")

    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 * GiB, 3 * GiB))

    outcome = run_process("train", solver, "--device", "cpu", preexec_fn=limit,
                          env={memory.ENV: "1T", "OMP_NUM_THREADS": "1",
                               "OPENBLAS_NUM_THREADS": "1"}, timeout=120)
    assert_one_error(outcome, "error: out of memory:")


def test_a_cgroup_limit_leaves_the_page_cache_reclaimable(tmp_path):
    from trainnet.runtime.memory import cgroup_room

    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("900000\n")
    (tmp_path / "memory.stat").write_text("anon 500000\ninactive_file 300000\nactive_file 100000\n")
    assert cgroup_room(tmp_path) == 1000000 - (900000 - 300000)
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_room(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory/memory.limit_in_bytes").write_text("2000\n")
    (v1 / "memory/memory.usage_in_bytes").write_text("1500\n")
    assert cgroup_room(v1) == 500   # no memory.stat: all of the usage counts
