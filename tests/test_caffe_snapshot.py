"""Snapshots in Caffe's formats (snapshot_format BINARYPROTO and HDF5) and resuming from them:
the files as Caffe writes and reads them, exact resume from trainnet's own, resume from states
written here independently of trainnet's writers, and clear errors for every other file."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from synthetic import write_project
from trainnet.cli import main
from trainnet.errors import TrainnetError
from trainnet.formats import caffe_pb
from trainnet.netcfg import load_solver
from trainnet.solver import caffe_state
from trainnet.solver.solver import Solver
from trainnet.formats.caffemodel import read_caffemodel
from trainnet.formats.weightkey import split_key, weight_key

# BatchNorm + Scale (folded into one step by the compiler) with a parameter layer between them
# in the file, a blob shared by name, and lr_mult 0 blobs: Caffe's history order is the file's.
NET = """
name: Order
layer:
  - {name: data, type: DummyData, top: [x, t], shape: [{dim: [4, 2, 3, 3]}, {dim: [4, 5]}],
     data_filler: [{type: gaussian}, {type: gaussian}]}
  - {name: conv, type: Convolution, bottom: x, top: c, num_output: 2, kernel_size: 3, pad: 1,
     weight_filler: {type: xavier}}
  - {name: bn, type: BatchNorm, bottom: c, top: c}
  - {name: side, type: InnerProduct, bottom: x, top: s, num_output: 5,
     param: [{name: shared}, {lr_mult: 0}], weight_filler: {type: xavier}}
  - {name: scale, type: Scale, bottom: c, top: c, bias_term: true}
  - {name: relu, type: ReLU, bottom: c, top: c}
  - {name: ip, type: InnerProduct, bottom: c, top: y, num_output: 5, weight_filler: {type: xavier}}
  - {name: twin, type: InnerProduct, bottom: x, top: z, num_output: 5,
     param: [{name: shared}, {lr_mult: 2}], bias_filler: {type: constant, value: 0.5}}
  - {name: sum, type: Eltwise, bottom: [y, s, z], top: out}
  - {name: loss, type: EuclideanLoss, bottom: [out, t], top: loss}
"""
CAFFE_ORDER = ["conv.0", "conv.1", "bn.0", "bn.1", "bn.2", "side.0", "side.1", "scale.0",
               "scale.1", "ip.0", "ip.1", "twin.1"]


def order_project(tmp_path, solver_type="SGD", fmt="BINARYPROTO", net=NET, **extra) -> Path:
    (tmp_path / "net.yaml").write_text(net)
    fields = {"net": "net.yaml", "base_lr": 0.01, "max_iter": 3, "type": solver_type,
              "momentum": 0.9, "snapshot_format": fmt, "snapshot_prefix": str(tmp_path / "o"),
              "random_seed": 1, **extra}
    (tmp_path / "solver.yaml").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    return tmp_path / "solver.yaml"


def keys(s: Solver, order) -> list[str]:
    return [weight_key(*s.net.params.slots[i].key) for i in order]


def test_history_in_caffes_order_and_binaryproto_files(tmp_path):
    s = Solver(load_solver(order_project(tmp_path, "Adam", momentum=0.9)))
    s.solve()
    order = caffe_state.caffe_order(s)
    assert keys(s, order) == CAFFE_ORDER
    assert keys(s, range(len(order))) != CAFFE_ORDER   # the fused step holds scale before side
    # Caffe's own schema (no field 1000) reads the state; the record stays an unknown field
    data = (tmp_path / "o_iter_3.solverstate").read_bytes()
    state = caffe_pb.SolverState.FromString(data)
    assert (state.iter, state.learned_net, state.current_step) == (3, str(tmp_path / "o_iter_3.caffemodel"), 0)
    assert len(state.SerializeToString()) == len(data)
    named = s.net.params.named()
    shapes = [tuple(b.shape.dim) for b in state.history]
    assert shapes == [named[k].shape for k in CAFFE_ORDER] * 2   # Adam: m..., then v...
    history = s.rule.history_host()
    for j, blob in enumerate(state.history):
        name, i = s.rule.history_names[j // len(order)], order[j % len(order)]
        np.testing.assert_array_equal(np.array(blob.data, np.float32).reshape(shapes[j]),
                                      s.net.params.view(history[name], i))
    model = read_caffemodel(tmp_path / "o_iter_3.caffemodel")
    assert [l.name for l in model.layers] == ["data", "conv", "bn", "side", "scale", "relu", "ip",
                                              "twin", "sum", "loss"]
    blobs = {l.name: l.blobs for l in model.layers}
    assert [len(blobs[n]) for n in ("conv", "bn", "side", "scale", "ip", "twin")] == [2, 3, 2, 2, 2, 2]
    np.testing.assert_array_equal(blobs["twin"][0], named["side.0"])   # shared: under each user
    np.testing.assert_array_equal(blobs["bn"][2], named["bn.2"])


def test_slot_order_is_caffes_for_batchnorm_and_scale_side_by_side(tmp_path):
    net = "\n".join(line for line in NET.splitlines() if "side" not in line
                    and "param: [{name: shared}, {lr_mult: 0}]" not in line)
    s = Solver(load_solver(order_project(tmp_path, net=net.replace("[y, s, z]", "[y, z]"))))
    order = caffe_state.caffe_order(s)
    assert order == list(range(len(order)))   # the folded Scale's blobs follow the BatchNorm's
    assert keys(s, order)[:7] == ["conv.0", "conv.1", "bn.0", "bn.1", "bn.2", "scale.0", "scale.1"]


def test_hdf5_files_as_caffe_writes_them(tmp_path):
    s = Solver(load_solver(order_project(tmp_path, fmt="HDF5", lr_policy="multistep",
                                         gamma=0.5, stepvalue="[1, 2, 9]")))
    s.solve()
    named = s.net.params.named()
    with h5py.File(tmp_path / "o_iter_3.caffemodel.h5", "r") as f:
        assert set(f) == {"data"}
        assert set(f["data"]) == {"data", "conv", "bn", "side", "scale", "relu", "ip", "twin",
                                  "sum", "loss"}
        assert set(f["data/twin"]) == {"1"} and set(f["data/side"]) == {"0", "1"}
        assert f["data/bn/2"].dtype == np.float32 and f["data/ip/0"].shape == (5, 18)
        np.testing.assert_array_equal(f["data/side/0"][()], named["side.0"])
    with h5py.File(tmp_path / "o_iter_3.solverstate.h5", "r") as f:
        assert f["iter"].dtype == np.int32 and f["iter"].shape == (1,) and f["iter"][0] == 3
        assert f["current_step"][0] == 2   # stepvalues 1 and 2 reached by iteration 2, the last
        learned = f["learned_net"]
        assert learned.shape == () and learned.dtype.kind == "S"
        assert learned.id.get_type().get_strpad() == h5py.h5t.STR_NULLTERM
        assert learned[()].rstrip(b"\0").decode() == str(tmp_path / "o_iter_3.caffemodel.h5")
        history = f["history"]
        assert sorted(history, key=int) == [str(i) for i in range(12)]
        for j, key in enumerate(CAFFE_ORDER):
            assert history[str(j)].shape == named[key].shape


@pytest.mark.parametrize("fmt, kind", [("BINARYPROTO", "SGD"), ("HDF5", "SGD"),
                                       ("BINARYPROTO", "Adam"), ("HDF5", "AdaDelta")])
def test_resume_from_caffe_format_is_bit_exact(tmp_path, fmt, kind):
    """Training 2N iterations equals N, a Caffe-format snapshot, resume, N more (shuffled data
    and dropout included: trainnet's record rides along where Caffe does not look)."""
    solver = write_project(tmp_path, max_iter=40, snapshot=20)
    extra = f"snapshot_format: {fmt}\ntype: {kind}\n" + ("momentum: 0.95\n" if kind == "AdaDelta" else "")
    solver.write_text(solver.read_text().replace("momentum: 0.9\n", "momentum: 0.9\n" if kind != "AdaDelta" else "") + extra)
    full = Solver(load_solver(solver))
    full.solve()
    half = Solver(load_solver(solver))
    half.cfg = half.cfg.model_copy(update={"max_iter": 20})
    half.solve()
    suffix = ".solverstate" if fmt == "BINARYPROTO" else ".solverstate.h5"
    lines = []
    resumed = Solver(load_solver(solver), log=lines.append)
    resumed.restore(tmp_path / f"out/tiny_iter_20{suffix}")
    assert resumed.iter == 20 and "cannot carry" not in " ".join(lines)
    resumed.solve()
    np.testing.assert_array_equal(resumed.net.params.data, full.net.params.data)
    for name in full.rule.history_names:
        np.testing.assert_array_equal(resumed.rule.history[name], full.rule.history[name])
    assert list(resumed.losses) == list(full.losses)


def caffe_project(tmp_path, **extra):
    """The tiny project with an SGD solver, and a Caffe-written state for it at iteration 30,
    built here from the protobuf classes alone: a caffemodel, legacy 4-D blob shapes for ip1."""
    solver = write_project(tmp_path, max_iter=32, **extra)
    s = Solver(load_solver(solver))
    rng = np.random.default_rng(3)
    named = s.net.params.named()
    values = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in named.items()}
    history = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in named.items()}
    net = caffe_pb.NetParameter(name="Tiny")
    for layer in ("data", "conv1", "pool1", "ip1", "relu1", "drop1", "ip2", "loss"):
        entry = net.layer.add(name=layer, type="X")
        for j in range(2 if weight_key(layer, 0) in values else 0):
            entry.blobs.append(blob(values[weight_key(layer, j)], legacy=layer == "ip1"))
    (tmp_path / "caffe_iter_30.caffemodel").write_bytes(net.SerializeToString())
    state = caffe_pb.SolverState(iter=30, learned_net="snapshots/caffe_iter_30.caffemodel",
                                 current_step=0)
    for key in ("conv1.0", "conv1.1", "ip1.0", "ip1.1", "ip2.0", "ip2.1"):
        state.history.append(blob(history[key], legacy=key.startswith("ip1")))
    return s, values, history, state


def blob(array: np.ndarray, legacy: bool = False):
    b = caffe_pb.BlobProto()
    if legacy:
        b.num, b.channels, b.height, b.width = (1,) * (4 - array.ndim) + array.shape
    else:
        b.shape.dim.extend(array.shape)
    b.data.extend(array.reshape(-1).tolist())
    return b


def test_resume_from_a_caffe_binaryproto_state(tmp_path, monkeypatch):
    s, values, history, state = caffe_project(tmp_path)
    path = tmp_path / "caffe_iter_30.solverstate"
    path.write_bytes(state.SerializeToString())
    monkeypatch.chdir(tmp_path.parent)   # learned_net is not under the working directory
    lines = []
    s.log = lines.append
    s.restore(path)
    assert s.iter == 30
    for key, view in s.net.params.named().items():
        np.testing.assert_array_equal(view, values[key])
        i = s.net.params.index[split_key(key)]
        np.testing.assert_array_equal(s.net.params.view(s.rule.history["momentum"], i), history[key])
    assert "the data starts from the beginning of its source" in lines[-1]
    assert "random generators" in lines[-1] and "smoothed loss" in lines[-1]
    s.solve()
    assert s.iter == 32


def test_resume_from_a_caffe_hdf5_state(tmp_path):
    s, values, history, _ = caffe_project(tmp_path)
    with h5py.File(tmp_path / "w.caffemodel.h5", "w") as f:
        for key, value in values.items():
            f.create_dataset(f"data/{key.replace('.', '/')}", data=value)
        f.create_group("data/pool1")
    with h5py.File(tmp_path / "s.solverstate.h5", "w") as f:
        f.create_dataset("iter", data=np.array([30], np.int32))
        f.create_dataset("current_step", data=np.array([0], np.int32))
        f.create_dataset("learned_net", data=np.bytes_(str(tmp_path / "w.caffemodel.h5")))
        for j, key in enumerate(("conv1.0", "conv1.1", "ip1.0", "ip1.1", "ip2.0", "ip2.1")):
            f.create_dataset(f"history/{j}", data=history[key])
    s.restore(tmp_path / "s.solverstate.h5")
    assert s.iter == 30
    np.testing.assert_array_equal(s.net.params.named()["ip1.0"], values["ip1.0"])
    i = s.net.params.index[("ip2", 1)]
    np.testing.assert_array_equal(s.net.params.view(s.rule.history["momentum"], i), history["ip2.1"])


def test_caffe_state_mismatches_are_named(tmp_path):
    s, values, history, state = caffe_project(tmp_path)
    path = tmp_path / "caffe_iter_30.solverstate"
    twice = caffe_pb.SolverState.FromString(state.SerializeToString())
    twice.history.extend(state.history)
    path.write_bytes(twice.SerializeToString())
    with pytest.raises(TrainnetError, match=r"12 history blobs, but this SGD solver keeps 6 \(1 per "
                       r"parameter blob, 6 blobs\); that many suggests an AdaDelta or Adam solver"):
        s.restore(path)
    state.history[3].Clear()
    state.history[3].shape.dim.extend([4, 4])
    state.history[3].data.extend([0.0] * 16)
    path.write_bytes(state.SerializeToString())
    with pytest.raises(TrainnetError, match=r"history blob 3 \(layer 'ip1' blob 1\): shape \(4, 4\) "
                       r"in the state but \(16,\) in the net"):
        s.restore(path)
    gone = caffe_pb.SolverState(iter=3, learned_net="nowhere/x.caffemodel")
    path.write_bytes(gone.SerializeToString())
    with pytest.raises(TrainnetError, match=r"learned_net\) nowhere/x.caffemodel is not found; tried "
                       rf".*nowhere/x.caffemodel and {tmp_path}/x.caffemodel"):
        s.restore(path)


def test_foreign_files_as_snapshot_say_what_they_are(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    solver.write_text(solver.read_text() + "snapshot_format: HDF5\n")
    Solver(load_solver(solver)).solve()
    out = tmp_path / "out"
    shutil.copy(out / "tiny_iter_2.solverstate.h5", tmp_path / "h5.solverstate")  # content, not suffix
    proto = write_project(tmp_path / "p", max_iter=2)
    proto.write_text(proto.read_text() + "snapshot_format: BINARYPROTO\n")
    Solver(load_solver(proto)).solve()
    state = (tmp_path / "p/out/tiny_iter_2.solverstate").read_bytes()
    (tmp_path / "cut.solverstate").write_bytes(state[:len(state) // 2])
    (tmp_path / "cut.solverstate.h5").write_bytes((out / "tiny_iter_2.solverstate.h5").read_bytes()[:3000])
    (tmp_path / "random.solverstate").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "empty.solverstate").write_bytes(b"")
    safetensors = write_project(tmp_path / "s", max_iter=2)
    Solver(load_solver(safetensors)).solve()
    (tmp_path / "cut_safetensors.solverstate").write_bytes(
        (tmp_path / "s/out/tiny_iter_2.solverstate").read_bytes()[:1000])
    cases = {
        tmp_path / "s/out/tiny_iter_2.safetensors": "not a trainnet solver state (a weights file?",
        tmp_path / "p/out/tiny_iter_2.caffemodel": "a Caffe model (.caffemodel), not a solver state",
        out / "tiny_iter_2.caffemodel.h5": "an HDF5 Caffe model (.caffemodel.h5), not a solver state",
        tmp_path / "cut.solverstate": "truncated or corrupt",
        tmp_path / "cut.solverstate.h5": "an HDF5 file that cannot be read (truncated or corrupt?)",
        tmp_path / "random.solverstate": "not a solver state (trainnet's or Caffe's), or a "
                                         "truncated or corrupt one",
        tmp_path / "cut_safetensors.solverstate": "not a readable solver state file (safetensors)",
        tmp_path / "empty.solverstate": "empty file, not a solver state file",
    }
    for path, message in cases.items():
        result = CliRunner().invoke(main, ["train", str(solver), "--snapshot", str(path)])
        assert result.exit_code == 1, (path, result.output)
        errors = [l for l in result.output.splitlines() if l.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], result.output
        assert "Traceback" not in result.output
    lines = []
    s = Solver(load_solver(solver), log=lines.append)
    s.restore(tmp_path / "h5.solverstate")
    assert s.iter == 2


def test_hdf5_weights_load_and_a_binaryproto_reader_points_to_them(tmp_path):
    solver = write_project(tmp_path, max_iter=30)
    solver.write_text(solver.read_text() + "snapshot_format: HDF5\n")
    s = Solver(load_solver(solver))
    s.solve()
    weights = tmp_path / "out/tiny_iter_30.caffemodel.h5"
    result = CliRunner().invoke(main, ["test", "--model", str(tmp_path / "net.yaml"), "--weights",
                                       str(weights), "--iterations", "2"])
    assert result.exit_code == 0 and "accuracy = " in result.output, result.output
    with pytest.raises(TrainnetError, match=r"an HDF5 file, not a Caffe model \(.caffemodel\) file .*"
                                            r"--weights of train and test reads it"):
        read_caffemodel(weights)


@pytest.mark.parametrize("policy, it, expected", [
    ({"lr_policy": "multistep", "stepvalue": [10, 20]}, 0, 0),
    ({"lr_policy": "multistep", "stepvalue": [10, 20]}, 10, 0),  # iteration 9's rate was the last
    ({"lr_policy": "multistep", "stepvalue": [10, 20]}, 11, 1),
    ({"lr_policy": "multistep", "stepvalue": [10, 20]}, 25, 2),
    ({"lr_policy": "step", "stepsize": 7}, 14, 1),
    ({"lr_policy": "step", "stepsize": 7}, 15, 2),
    ({"lr_policy": "inv"}, 20, 0),
])
def test_current_step(policy, it, expected):
    from trainnet.netcfg.solver import SolverConfig

    assert caffe_state.current_step(SolverConfig(net="n", **policy), it) == expected


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_caffe_format_resume_is_exact_on_the_gpu(tmp_path, gpu_device, fmt):
    solver = write_project(tmp_path, max_iter=30)
    solver.write_text(solver.read_text() + f"snapshot_format: {fmt}\ntype: Adam\n")

    def run(iterations, state=None):
        s = Solver(load_solver(solver), gpu_device)
        if state is not None:
            s.restore(state)
        while s.iter < iterations:
            s.step_once()
        return s

    whole = run(24)
    resumed = run(24, run(12).snapshot())
    for key, want in whole.net.params.named_host().items():
        np.testing.assert_array_equal(resumed.net.params.named_host()[key], want)
    for name, want in whole.rule.history_host().items():
        np.testing.assert_array_equal(resumed.rule.history_host()[name], want)
