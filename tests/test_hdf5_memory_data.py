"""HDF5Data (files written with h5py here), HDF5Output (read back with h5py) and MemoryData
(arrays from Python), on the CPU and the emulated GPU."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from trainnet.errors import ConfigError, TrainnetError
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.net import Net

RNG = np.random.default_rng(5)
X = RNG.normal(size=(11, 2, 3)).astype(np.float32)
Y = np.arange(11, dtype=np.int32)  # integers arrive as float32


@pytest.fixture
def files(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"], f["y"] = X[:4], Y[:4]
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["x"], f["y"] = X[4:], Y[4:]
    (tmp_path / "list.txt").write_text("a.h5\nb.h5\n")
    return tmp_path


def net(folder, layers: str, phase="TEST", device=None, seed=0) -> Net:
    cfg = load_net_text("name: h\nlayer:\n" + layers, str(folder / "net.yaml"))
    from trainnet.runtime.device import CPU
    device = device or CPU
    return Net(compile_net(cfg, phase, gpu=device.is_gpu), device, rng=np.random.default_rng(seed))


HDF5 = "  - {name: h, type: HDF5Data, top: [x, y], source: list.txt%s}\n"
SINK = "  - {name: s, type: Silence, bottom: [x, y]}\n"


def run(n: Net, count: int, *blobs):
    out = []
    for _ in range(count):
        n.forward()
        out.append([n.device.to_host(n.data(b)).copy() for b in blobs])
    return out


def test_items_in_file_order_across_files(files):
    n = net(files, HDF5 % ", batch_size: 3" + SINK)
    assert n.plan.blob("x").shape == (3, 2, 3) and n.plan.blob("y").shape == (3,)
    got = run(n, 4, "x", "y")
    order = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 0]]
    for (x, y), items in zip(got, order):
        np.testing.assert_array_equal(x, X[items])
        np.testing.assert_array_equal(y, items)


def test_shuffle_keeps_a_file_together(files):
    got = run(net(files, HDF5 % ", batch_size: 11, shuffle: true"), 3, "y")
    epochs = [y.astype(int).tolist() for (y,) in got]
    for epoch in epochs:
        assert sorted(epoch) == list(range(11))
        assert set(epoch[:4]) == {0, 1, 2, 3} or set(epoch[:7]) == set(range(4, 11))
    assert len({tuple(e) for e in epochs}) > 1


@pytest.mark.parametrize("change, message", [
    (lambda d: d.joinpath("list.txt").write_text("a.h5\nmissing.h5\n"), "missing.h5: not a readable HDF5"),
    (lambda d: h5py.File(d / "b.h5", "w").create_dataset("x", data=X), "no dataset named 'y'"),
    (lambda d: _write(d / "b.h5", x=X[4:, :1], y=Y[4:]), "items of shape (1, 3), the first file's (2, 3)"),
    (lambda d: _write(d / "b.h5", x=X[4:], y=Y[5:]), "'y' holds 6 items but 'x' holds 7"),
    (lambda d: _write(d / "b.h5", x=X[4:], y=np.array(["a"] * 7, "S1")), "HDF5Data reads numeric"),
    (lambda d: d.joinpath("list.txt").write_text(""), "names no HDF5 files"),
])
def test_bad_files_are_named(files, change, message):
    change(files)
    with pytest.raises(ConfigError, match="layer 'h' \\(HDF5Data\\)") as exc:
        net(files, HDF5 % ", batch_size: 3" + SINK)
    assert message in str(exc.value)


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v


def test_transform_param_is_refused(files):
    with pytest.raises(ConfigError, match="HDF5Data does not transform its data"):
        net(files, HDF5 % ", batch_size: 3, transform_param: {scale: 2}" + SINK)


OUTPUT = "  - {name: o, type: HDF5Output, bottom: [x, y], file_name: out/feat.h5}\n"


def test_hdf5_output_appends_every_batch(files, monkeypatch):
    monkeypatch.chdir(files)
    n = net(files, HDF5 % ", batch_size: 3" + OUTPUT)
    run(n, 3, "x")
    with h5py.File(files / "out/feat.h5") as f:  # flushed after every batch, readable now
        # 4-D as Caffe writes them: num, channels, height, width
        np.testing.assert_array_equal(f["data"][()], X[:9, :, :, None])
        np.testing.assert_array_equal(f["label"][()], Y[:9].astype(np.float32).reshape(9, 1, 1, 1))
    del n  # its file closes with it
    net(files, HDF5 % ", batch_size: 3" + OUTPUT)  # a new net starts the file afresh, as Caffe
    with h5py.File(files / "out/feat.h5") as f:
        assert f["data"].shape == (0, 2, 3, 1)


MEMORY = "  - {name: m, type: MemoryData, top: [x, y], batch_size: 2, channels: 1, height: 2, width: 3}\n"


def test_memory_data_wraps_and_checks(tmp_path):
    n = net(tmp_path, MEMORY + SINK)
    with pytest.raises(TrainnetError, match="no arrays given; call Net.set_input_arrays"):
        n.forward()
    data = RNG.normal(size=(4, 1, 2, 3)).astype(np.float32)
    n.set_input_arrays(data, np.array([7, 8, 9, 10]))
    got = run(n, 3, "x", "y")
    np.testing.assert_array_equal(got[0][0], data[:2])
    np.testing.assert_array_equal(got[2][1], [7, 8])  # wrapped
    state = n.states["m"].get_state()
    n.forward()
    n.states["m"].set_state(state)
    n.forward()
    np.testing.assert_array_equal(n.data("y"), [9, 10])
    for bad, message in [((data[:3], [1, 2, 3]), "positive multiple of batch_size 2"),
                         ((data[:, :, :1], [1, 2, 3, 4]), r"must be \(N, 1, 2, 3\)"),
                         ((data, [1, 2]), "4 items but 2 labels")]:
        with pytest.raises(TrainnetError, match=message):
            n.set_input_arrays(*bad)
    with pytest.raises(TrainnetError, match="has no MemoryData layer 'other'"):
        n.set_input_arrays(data, [1, 2, 3, 4], layer="other")


def test_memory_data_refuses_a_transform(tmp_path):
    with pytest.raises(ConfigError, match="MemoryData does not transform"):
        net(tmp_path, MEMORY.replace("}\n", ", transform_param: {mirror: true}}\n") + SINK)


def test_on_the_gpu(files, gpu_device, monkeypatch):
    """Both layers through the GPU path (pinned staging), equal to the CPU; HDF5Output keeps
    the net off graph replay and writes the same file."""
    monkeypatch.chdir(files)
    layers = HDF5 % ", batch_size: 3, shuffle: true" + OUTPUT
    cpu = net(files, layers, seed=3)
    want = run(cpu, 5, "x", "y")
    del cpu
    cpu_file = h5py.File(files / "out/feat.h5")["data"][()]
    gpu = net(files, layers, device=gpu_device, seed=3)
    assert gpu.graph_blocker == "o" and not gpu.use_graph
    got = run(gpu, 5, "x", "y")
    for (x0, y0), (x1, y1) in zip(want, got):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(h5py.File(files / "out/feat.h5")["data"][()], cpu_file)
    memory = net(files, MEMORY + SINK, device=gpu_device)
    data = RNG.normal(size=(2, 1, 2, 3)).astype(np.float32)
    memory.set_input_arrays(data, [1, 2])
    memory.forward()
    np.testing.assert_array_equal(gpu_device.to_host(memory.data("x")), data)
    memory.set_input_arrays(data * 2, [3, 4])  # replaced between passes: no stale read-ahead
    memory.forward()
    np.testing.assert_array_equal(gpu_device.to_host(memory.data("x")), data * 2)


def test_a_solver_with_hdf5_output_snapshots_and_resumes(files, monkeypatch):
    """The writer is not part of a snapshot; the data cursor is, so the resume is exact."""
    from trainnet.netcfg import load_solver
    from trainnet.solver.solver import Solver

    monkeypatch.chdir(files)
    (files / "net.yaml").write_text(
        "layer:\n" + HDF5 % ", batch_size: 3" +
        "  - {name: ip, type: InnerProduct, bottom: x, top: ip, num_output: 11,\n"
        "     weight_filler: {type: xavier}}\n"
        "  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, y], top: loss}\n"
        "  - {name: o, type: HDF5Output, bottom: [ip, y], file_name: out/ip.h5,\n"
        "     include: {phase: TEST}}\n")
    solver_text = ("net: net.yaml\ntest_iter: 2\ntest_interval: 2\nbase_lr: 0.1\nmax_iter: 4\n"
                   "snapshot: 2\nsnapshot_prefix: run\nrandom_seed: 3\n")
    (files / "solver.yaml").write_text(solver_text)
    whole = Solver(load_solver(files / "solver.yaml"))
    whole.solve()
    want = whole.net.params.data.copy()
    del whole  # closes its output file
    resumed = Solver(load_solver(files / "solver.yaml"))
    resumed.restore(files / "run_iter_2.solverstate")
    resumed.solve()
    np.testing.assert_array_equal(resumed.net.params.data, want)
    with h5py.File(files / "out/ip.h5") as f:
        assert f["data"].shape == (4 * 3, 11, 1, 1)  # the resumed run's two tests of 2 batches
