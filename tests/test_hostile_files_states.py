"""Solver states (.solverstate, .solverstate.h5) and HDF5 models (.caffemodel.h5) damaged or
hostile: one clean line naming the file, bounded memory, never accepted in part (the families
and helpers of test_hostile_files.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import pytest

from hostile import ROOT, assert_one_error, cli
from synthetic import write_project
from test_hostile_files import WEIGHTS, check_family, deadline, peak_bytes, refused
from trainnet.formats import caffe_pb
from trainnet.formats.solverstate import CaffeState, read_state, write_binaryproto, write_hdf5
from trainnet.formats.caffemodel_h5 import read_caffemodel_h5, write_caffemodel_h5


# --- .solverstate ---------------------------------------------------------------------------------

HISTORY = [WEIGHTS["conv.0"], WEIGHTS["conv.1"], WEIGHTS["ip.0"]]


def history_shapes(state: CaffeState) -> list:
    return [h.shape for h in state.history]


@pytest.mark.parametrize("extra", [b"trainnet's resume record", None])
def test_solverstate_family(tmp_path, extra):
    """trainnet's state cut anywhere is refused.  Caffe's, cut after its weights' name, reads
    as a state without history (as an old Caffe's state of a net without parameters would):
    a resume refuses it by the count of history blobs against the net."""
    path = tmp_path / "s.solverstate"
    write_binaryproto(path, CaffeState(12, "w.caffemodel", HISTORY, 1, extra))
    check_family(tmp_path, path.read_bytes(), ".solverstate", read_state, history_shapes, seed=4,
                 cut_ok=lambda state: extra is None and not state.history)


def test_a_solverstate_cut_between_fields_is_refused(tmp_path):
    """Every cut of trainnet's state between two fields (after the iteration, the record, the
    weights' name, each history blob) lacks what follows, and is refused as truncated."""
    path = tmp_path / "s.solverstate"
    write_binaryproto(path, CaffeState(12, "w.caffemodel", HISTORY, 1, b"record"))
    data = path.read_bytes()
    assert data[0] == 0x08   # the iteration first, as Caffe writes it
    state = caffe_pb.TrainnetSolverState.FromString(data)
    assert (state.iter, state.trainnet, state.current_step) == (12, b"record", 1)
    assert len(state.history) == 3
    bounds, at = [], 0
    while at < len(data):   # the top-level field boundaries
        tag, at = _varint(data, at)
        if tag & 7 == 0:
            _, at = _varint(data, at)
        else:
            length, at = _varint(data, at)
            at += length
        bounds.append(at)
    assert len(bounds) == 7
    for cut in bounds[:-1]:
        (tmp_path / "cut.solverstate").write_bytes(data[:cut])
        refused(read_state, tmp_path / "cut.solverstate")


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def test_train_from_a_cut_solverstate_is_one_line(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    path = tmp_path / "s.solverstate"
    write_binaryproto(path, CaffeState(1, "w.caffemodel", HISTORY, 0, b"record"))
    data = path.read_bytes()
    for cut in (len(data) // 2, data.index(b"w.caffemodel") + len("w.caffemodel")):
        path.write_bytes(data[:cut])
        assert_one_error(cli("train", solver, "--snapshot", path), str(path))
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*_iter_*"))


def test_a_state_naming_its_weights_in_invalid_utf8_is_refused(tmp_path):
    path = tmp_path / "s.solverstate"
    data = caffe_pb.SolverState(iter=3, learned_net="w.caffemodel", current_step=0).SerializeToString()
    path.write_bytes(data.replace(b"w.caffemodel", b"w\xffcaffemodel"))
    assert "learned_net" in refused(read_state, path)


def test_a_caffe_state_without_its_weights_name_is_refused(tmp_path):
    """Caffe writes learned_net in every state: one without was cut after its iteration."""
    path = tmp_path / "s.solverstate"
    path.write_bytes(caffe_pb.SolverState(iter=3).SerializeToString())
    assert "truncated" in refused(read_state, path)


def test_solverstate_h5_family(tmp_path):
    path = tmp_path / "s.solverstate.h5"
    write_hdf5(path, CaffeState(12, "w.caffemodel.h5", HISTORY, 1, b"record"))
    check_family(tmp_path, path.read_bytes(), ".solverstate.h5", read_state, history_shapes, seed=5)


# --- HDF5 (.caffemodel.h5) ------------------------------------------------------------------------

def test_caffemodel_h5_family(tmp_path):
    path = tmp_path / "w.caffemodel.h5"
    write_caffemodel_h5(path, ["data", "conv", "ip", "loss"], WEIGHTS)
    check_family(tmp_path, path.read_bytes(), ".caffemodel.h5", read_caffemodel_h5,
                 lambda blobs: sorted(v.shape for v in blobs.values()), seed=6)


def test_hdf5_datasets_declaring_absurd_sizes_allocate_nothing(tmp_path):
    """A dataset of 2**40 floats with no stored values (HDF5 would give fill values), in a model
    and in a solver state: refused from the declared shape, before any read."""
    path = tmp_path / "w.caffemodel.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/ip/0", shape=(2**20, 2**20), dtype="f4", chunks=(64, 64))
    assert "declares shape (1048576, 1048576)" in refused(read_caffemodel_h5, path)
    assert peak_bytes(lambda: read_caffemodel_h5(path)) < 2**20
    state = tmp_path / "s.solverstate.h5"
    write_hdf5(state, CaffeState(1, "w.caffemodel.h5", [], 0, None))
    with h5py.File(state, "a") as f:
        f.create_dataset("history/0", shape=(2**40,), dtype="f4", chunks=(1024,))
    refused(read_state, state)
    assert peak_bytes(lambda: read_state(state)) < 2**20


def test_the_pure_python_protobuf_runtime_refuses_the_same_files(tmp_path):
    """Runtimes differ (upb hands back a non-UTF-8 name as bytes; the pure-Python one counted
    a history blob whose tag a flip changed as an unknown field, not in ByteSize, and dropped
    it): in a process on the pure-Python runtime every one is still refused."""
    state = tmp_path / "s.solverstate"
    write_binaryproto(state, CaffeState(12, "w.caffemodel", HISTORY, 1, b"record"))
    data = bytearray(state.read_bytes())
    data[data.index(b"\x1a", data.index(b"w.caffemodel"))] = 0x3a   # history -> field 7
    state.write_bytes(bytes(data))
    name = tmp_path / "n.caffemodel"
    net = caffe_pb.NetParameter(name="net")
    net.layer.add(name="ip", type="InnerProduct")
    name.write_bytes(net.SerializeToString().replace(b"\x0a\x03net", b"\x0a\x03n\xfft"))
    script = ("import sys\nfrom google.protobuf.internal import api_implementation as a\n"
              "assert a.Type() == 'python', a.Type()\n"
              "from trainnet.errors import TrainnetError\n"
              "from trainnet.formats.solverstate import read_state\n"
              "from trainnet.formats.caffemodel import read_caffemodel\n"
              "for load, path in ((read_state, sys.argv[1]), (read_caffemodel, sys.argv[2])):\n"
              "    try:\n        load(path)\n        print('accepted', path)\n"
              "    except TrainnetError as exc:\n        print('refused', exc)\n")
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script, state, name], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("refused") for line in lines), out.stdout


def test_links_into_other_files_are_not_followed(tmp_path):
    """HDF5 follows an external link by opening its target, which could be a pipe (the open
    blocks for ever) or any file: a blob, the history or a state's group linked so is refused
    without opening it."""
    os.mkfifo(tmp_path / "pipe")
    model = tmp_path / "w.caffemodel.h5"
    write_caffemodel_h5(model, ["conv", "ip"], WEIGHTS)
    with h5py.File(model, "a") as f:
        del f["data/ip/1"]
        f["data/ip/1"] = h5py.ExternalLink(str(tmp_path / "pipe"), "/x")
    state = tmp_path / "s.solverstate.h5"
    write_hdf5(state, CaffeState(12, "w.caffemodel.h5", HISTORY, 1, b"record"))
    with h5py.File(state, "a") as f:
        del f["history"]
        f["history"] = h5py.ExternalLink(str(tmp_path / "pipe"), "/history")
    for load, path in ((read_caffemodel_h5, model), (read_state, state)):
        with deadline(20):
            assert "a link into another file" in refused(load, path)
