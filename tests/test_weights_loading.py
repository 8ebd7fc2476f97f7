"""The weights reader (solver/weights.py) and trainnet's safetensors files (formats/tensorfile.py):
a blob-by-blob report, checks made whole before anything is assigned, dtypes, digests, and the
state's binding to its weights (issue 10)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save, save_file

from synthetic import write_project
from trainnet.errors import TrainnetError
from trainnet.formats import tensorfile
from trainnet.netcfg import load_solver
from trainnet.solver import snapshot as snap
from trainnet.solver.solver import Solver
from trainnet.solver.weights import EXACT, FINETUNE, load_weights, read_weights


@pytest.fixture
def solver(tmp_path) -> Solver:
    s = Solver(load_solver(write_project(tmp_path, max_iter=4, snapshot=2)))
    s.solve()
    return s


def fresh(tmp_path) -> Solver:
    return Solver(load_solver(tmp_path / "solver.yaml"))


def trained(s: Solver) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in s.net.params.named().items()}


def test_the_report_accounts_for_every_blob(tmp_path, solver):
    tensors = trained(solver)
    del tensors["ip2.1"]
    tensors["old.0"] = np.ones(2, np.float32)
    snap.save_tensors(tmp_path / "w.safetensors", tensors, {})
    target = fresh(tmp_path)
    report = load_weights(tmp_path / "w.safetensors", target.net.params, FINETUNE)
    assert report.loaded == ["conv1.0", "conv1.1", "ip1.0", "ip1.1", "ip2.0"]
    assert report.missing == ["ip2.1"] and report.skipped == ["old"]
    assert report.net_blobs == list(target.net.params.named())
    assert report.lines()[0].startswith("Loaded 5 of 6 parameter blobs from ")
    np.testing.assert_array_equal(target.net.params.named()["ip2.0"], tensors["ip2.0"])
    with pytest.raises(TrainnetError, match=r"lacks 1 of the net's 6 parameter blobs: ip2.1$"):
        load_weights(tmp_path / "w.safetensors", target.net.params, EXACT)


def test_nothing_is_assigned_when_a_check_fails(tmp_path, solver):
    tensors = trained(solver)
    tensors["ip2.1"][0] = np.nan     # the last blob: the others were read before it
    snap.save_tensors(tmp_path / "w.safetensors", tensors, {})
    target = fresh(tmp_path)
    before = target.net.params.data.copy()
    with pytest.raises(TrainnetError, match="blob ip2.1 holds NaN; weights must be finite"):
        load_weights(tmp_path / "w.safetensors", target.net.params, FINETUNE)
    np.testing.assert_array_equal(target.net.params.data, before)


def bf16(array: np.ndarray) -> bytes:
    return (array.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def handmade(path: Path, entries: dict[str, tuple[str, tuple, bytes]], metadata=None) -> Path:
    """A safetensors file written byte by byte (dtypes NumPy lacks)."""
    header, offset, data = {}, 0, b""
    for name, (dtype, shape, raw) in entries.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset, data = offset + len(raw), data + raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_float16_bfloat16_and_float64_are_converted(tmp_path, solver):
    tensors = trained(solver)
    halves = {k: v.astype(np.float16) for k, v in tensors.items()}
    save_file(halves, str(tmp_path / "h.safetensors"))
    target = fresh(tmp_path)
    load_weights(tmp_path / "h.safetensors", target.net.params, EXACT)
    np.testing.assert_array_equal(target.net.params.named()["ip1.0"], halves["ip1.0"].astype(np.float32))
    save_file({k: v.astype(np.float64) for k, v in tensors.items()}, str(tmp_path / "d.safetensors"))
    load_weights(tmp_path / "d.safetensors", target.net.params, EXACT)
    np.testing.assert_array_equal(target.net.params.named()["ip1.0"], tensors["ip1.0"])
    handmade(tmp_path / "b.safetensors", {k: ("BF16", v.shape, bf16(v)) for k, v in tensors.items()})
    load_weights(tmp_path / "b.safetensors", target.net.params, EXACT)
    want = (tensors["ip1.0"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(target.net.params.named()["ip1.0"], want)
    big = {k: v.astype(np.float64) for k, v in tensors.items()}
    big["conv1.1"][0] = 1e300
    save_file(big, str(tmp_path / "big.safetensors"))
    with pytest.raises(TrainnetError, match="blob conv1.1 holds float64 values beyond float32's range"):
        load_weights(tmp_path / "big.safetensors", target.net.params, EXACT)


def test_float8_and_unknown_dtypes_are_refused(tmp_path, solver):
    target = fresh(tmp_path)
    handmade(tmp_path / "f8.safetensors", {"conv1.1": ("F8_E4M3", (4,), b"\0" * 4)})
    with pytest.raises(TrainnetError, match="blob conv1.1 is float8_e4m3; weights must be floating "
                                            r"point \(float16, bfloat16, float32 or float64\)"):
        load_weights(tmp_path / "f8.safetensors", target.net.params)
    handmade(tmp_path / "q.safetensors", {"conv1.1": ("Q9", (4,), b"\0" * 4)})
    with pytest.raises(TrainnetError, match="not a readable weights file .* tensor conv1.1 has no "
                                            "dtype safetensors defines"):
        load_weights(tmp_path / "q.safetensors", target.net.params)


def test_a_state_refuses_a_history_that_is_not_floats(tmp_path, solver):
    tensors, meta = snap.load_state(tmp_path / "out/tiny_iter_4.solverstate")
    tensors["history/momentum"] = tensors["history/momentum"].astype(np.int32)
    snap.save_state(tmp_path / "s.solverstate", tensors, meta)
    with pytest.raises(TrainnetError, match="blob history/momentum is int32; solver state blobs must "
                                            "be floating point"):
        snap.load_state(tmp_path / "s.solverstate")


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-3], "its data takes .* bytes but the file holds"),
    (lambda d: d[:6], "shorter than a header"),
    (lambda d: b"\xff" * 8 + d[8:], "its header of .* bytes runs past the end of the file"),
    (lambda d: d[:8] + b"[" + d[9:], "its header is not JSON"),
])
def test_damaged_headers_are_named(tmp_path, solver, damage, message):
    data = (tmp_path / "out/tiny_iter_4.safetensors").read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(damage(data))
    with pytest.raises(TrainnetError, match="bad.safetensors: not a readable weights file "
                                            rf"\(safetensors\): {message}"):
        tensorfile.read(tmp_path / "bad.safetensors", "weights")


def test_overlapping_data_is_refused(tmp_path):
    raw = np.zeros(4, np.float32).tobytes()
    path = handmade(tmp_path / "o.safetensors", {"a.0": ("F32", (4,), raw), "a.1": ("F32", (4,), raw)})
    data = path.read_bytes().replace(b"[16, 32]", b"[0, 16] ")
    path.write_bytes(data)
    with pytest.raises(TrainnetError, match="overlap or leave gaps"):
        tensorfile.read(path, "weights")


def test_digests_are_recorded_and_checked(tmp_path):
    tensors = {"a.0": np.arange(6, dtype=np.float32).reshape(2, 3), "a.1": np.ones(3, np.float32)}
    digests = tensorfile.write(tmp_path / "w.safetensors", tensors, {"x": "y"})
    read = tensorfile.read(tmp_path / "w.safetensors", "weights")
    assert read.metadata["x"] == "y" and read.digests == digests
    assert json.loads(read.metadata["sha256"]) == digests
    # the same bytes in another shape are another tensor
    assert tensorfile.array_digest(tensors["a.0"].reshape(3, 2)) != digests["a.0"]
    lost = {"a.0": tensors["a.0"]}
    (tmp_path / "lost.safetensors").write_bytes(save(lost, {"sha256": json.dumps(digests)}))
    with pytest.raises(TrainnetError, match="file damaged: blob a.1 has a recorded digest but is not "
                                            "in the file"):
        tensorfile.read(tmp_path / "lost.safetensors", "weights")
    (tmp_path / "junk.safetensors").write_bytes(save(lost, {"sha256": "[1, 2]"}))
    with pytest.raises(TrainnetError, match=r"file damaged: its record of digests \(sha256\) is not "
                                            "readable"):
        tensorfile.read(tmp_path / "junk.safetensors", "weights")


def test_a_state_records_its_weights_and_older_states_still_resume(tmp_path, solver):
    state = tmp_path / "out/tiny_iter_4.solverstate"
    tensors, meta = snap.load_state(state)
    assert meta["iter"] == 4 and meta["weights"] == "tiny_iter_4.safetensors"
    weights = tmp_path / "out" / meta["weights"]
    assert meta["weights_sha256"] == tensorfile.digest_of_set(
        tensorfile.read(weights, "weights").digests)
    # as an older trainnet wrote them: no digests anywhere
    del meta["weights_sha256"]
    save_file(tensors, str(state), {"format": "trainnet-solverstate", "meta": json.dumps(meta)})
    save_file(snap.read_tensors(weights, "weights"), str(weights),
              {"format": "trainnet-weights", "iter": "4"})
    resumed = fresh(tmp_path)
    resumed.restore(state)
    assert resumed.iter == 4
    np.testing.assert_array_equal(resumed.net.params.data, solver.net.params.data)


def test_resume_needs_every_blob_even_without_digests(tmp_path, solver):
    state = tmp_path / "out/tiny_iter_4.solverstate"
    tensors, meta = snap.load_state(state)
    del meta["weights_sha256"]
    snap.save_state(state, tensors, meta)
    weights = snap.read_tensors(tmp_path / "out/tiny_iter_4.safetensors", "weights")
    del weights["conv1.1"]
    save_file(weights, str(tmp_path / "out/tiny_iter_4.safetensors"))
    with pytest.raises(TrainnetError, match="lacks 1 of the net's 6 parameter blobs: conv1.1"):
        fresh(tmp_path).restore(state)


def test_read_weights_gives_digests_for_caffe_files_too(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    solver.write_text(solver.read_text() + "snapshot_format: BINARYPROTO\n")
    s = Solver(load_solver(solver))
    s.solve()
    report, blobs = read_weights(tmp_path / "out/tiny_iter_2.caffemodel", s.net.params, EXACT,
                                 digests=True)
    assert report.digests == {k: tensorfile.array_digest(v) for k, v in s.net.params.named().items()}
    assert set(blobs) == set(report.loaded)
