"""Corrupt and hostile binary files end in one clean line naming the file, in bounded time and
memory, and are never accepted in part: Caffe's protobuf files (.caffemodel, a .binaryproto mean).

Each format gets a generated family of damaged copies of a good file (``family``: empty, cut at
several offsets, seeded byte flips, a wrong magic), plus a folder where the file should be, an
unreadable file, and absurd declared sizes.  A cut file must be refused; a flipped one refused,
or read whole (these formats carry no checksum: a flipped value byte reads as another value).
Solver states and HDF5 models are in test_hostile_files_states.py, datasets (IDX, CIFAR,
databases) in test_hostile_files_data.py, HDF5 data lists and image lists in
test_hostile_files_lists.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tracemalloc
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from hostile import assert_one_error, cli
from trainnet.errors import TrainnetError
from trainnet.formats import caffe_pb
from trainnet.formats.blobproto import blob_proto, load_mean, save_blob, varint
from trainnet.formats.solverstate import read_state
from trainnet.formats.caffemodel import CaffeLayer, caffe_to_trainnet, read_caffemodel, write_caffemodel

RNG = np.random.default_rng(10)
WEIGHTS = {"conv.0": RNG.normal(size=(4, 3, 3, 3)), "conv.1": RNG.normal(size=4),
           "ip.0": RNG.normal(size=(5, 36)), "ip.1": RNG.normal(size=5)}
WEIGHTS = {k: v.astype(np.float32) for k, v in WEIGHTS.items()}
NET = """name: hostile
layer:
  - {name: data, type: Input, top: data, shape: {dim: [2, 3, 5, 5]}}
  - {name: conv, type: Convolution, bottom: data, top: conv, num_output: 4, kernel_size: 3}
  - {name: ip, type: InnerProduct, bottom: conv, top: ip, num_output: 5}
"""


# --- the family -----------------------------------------------------------------------------------

def family(good: bytes, seed: int, flips: int = 12) -> dict[str, bytes]:
    """Damaged copies of ``good`` by name: empty, its first four bytes (a magic number, a
    header) inverted, cut short at several offsets, and ``flips`` copies with one to three
    bytes flipped (seeded)."""
    n = len(good)
    cases = {"empty": b"", "magic": bytes(b ^ 0xFF for b in good[:4]) + good[4:]}
    cuts = {1, 2, 4, 8, 16, n // 4, n // 3, n // 2, 2 * n // 3, 3 * n // 4, n - 4, n - 1}
    for cut in sorted(cuts):
        cases[f"cut{cut}"] = good[:cut]
    rng = np.random.default_rng(seed)
    for k in range(flips):
        damaged = bytearray(good)
        for at in rng.choice(n, size=int(rng.integers(1, 4)), replace=False):
            damaged[at] ^= int(rng.integers(1, 256))
        cases[f"flip{k}"] = bytes(damaged)
    return cases


def refused(load: Callable, path: Path) -> str:
    """``load(path)`` raises one line naming ``path``; returns it."""
    with pytest.raises(TrainnetError) as exc:
        load(path)
    message = str(exc.value)
    assert str(path) in message and "\n" not in message, message
    return message


def check_family(tmp_path: Path, good: bytes, suffix: str, load: Callable,
                 shape_of: Callable, seed: int, cut_ok: Callable = lambda got: False) -> None:
    """An empty copy and a wrong magic refused; every cut copy refused (or read as ``cut_ok``
    allows); every flipped copy refused or read with the good file's shapes; a folder, a missing
    file, a pipe, /dev/zero and an unreadable file refused."""
    folder = tmp_path / "family"
    folder.mkdir()
    source = folder / f"good{suffix}"
    source.write_bytes(good)
    whole = shape_of(load(source))
    for name, data in family(good, seed).items():
        path = folder / f"{name}{suffix}"
        path.write_bytes(data)
        if name in ("empty", "magic"):
            refused(load, path)
            continue
        if name.startswith("cut"):
            try:
                got = load(path)
            except TrainnetError as exc:
                assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
            else:
                assert cut_ok(got), name
            continue
        try:
            got = load(path)
        except TrainnetError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
        else:
            assert shape_of(got) == whole, name
    (folder / f"dir{suffix}").mkdir()
    refused(load, folder / f"dir{suffix}")
    refused(load, folder / f"missing{suffix}")
    os.mkfifo(folder / f"pipe{suffix}")   # opening it would block: refused from its kind alone
    for special in (folder / f"pipe{suffix}", Path("/dev/zero")):
        with deadline(20):
            refused(load, special)
    if os.geteuid() != 0:  # root reads any file
        locked = folder / f"locked{suffix}"
        locked.write_bytes(good)
        locked.chmod(0)
        refused(load, locked)


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail the block, rather than hang the suite, when it runs past ``seconds``."""
    def hung(signum, frame):
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def peak_bytes(fn: Callable) -> int:
    """The most memory Python and NumPy held at once while ``fn()`` ran (errors ignored)."""
    tracemalloc.start()
    try:
        fn()
    except TrainnetError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# --- .caffemodel ----------------------------------------------------------------------------------

def caffemodel_bytes(tmp_path: Path, name: str = "hostile") -> bytes:
    path = tmp_path / "source.caffemodel"
    w = WEIGHTS
    write_caffemodel(path, name, [CaffeLayer("conv", "Convolution", [w["conv.0"], w["conv.1"]]),
                                  CaffeLayer("ip", "InnerProduct", [w["ip.0"], w["ip.1"]]),
                                  CaffeLayer("loss", "SoftmaxWithLoss", [], ("ip",), ("loss",))])
    return path.read_bytes()


def weight_shapes(model) -> list:
    return [[b.shape for b in layer.blobs] for layer in model.layers]


def test_caffemodel_family(tmp_path):
    check_family(tmp_path, caffemodel_bytes(tmp_path), ".caffemodel", read_caffemodel,
                 weight_shapes, seed=1)


def test_convert_refuses_every_damaged_caffemodel_and_writes_nothing(tmp_path):
    (tmp_path / "net.yaml").write_text(NET)
    out = tmp_path / "out" / "w.safetensors"
    cases = {**family(caffemodel_bytes(tmp_path), seed=2, flips=0), "magic": b"\x89PNG" + bytes(40)}
    for name, data in cases.items():
        path = tmp_path / f"{name}.caffemodel"
        path.write_bytes(data)
        model = ("--model", tmp_path / "net.yaml") if name in ("cut16", "magic") else ()
        assert_one_error(cli("convert", path, out, *model), str(path))
        assert not out.parent.exists() or not list(out.parent.iterdir())


@pytest.mark.parametrize("where", ["net", "layer", "bottom"])
def test_convert_caffemodel_with_invalid_utf8_names(tmp_path, where):
    """Today's protobuf runtime (upb) hands back a name that is not UTF-8 as bytes, and the pure
    Python one refuses the message: either way one line."""
    net = caffe_pb.NetParameter(name="net")
    layer = net.layer.add(name="ip", type="InnerProduct")
    layer.bottom.append("x")
    layer.blobs.extend([blob_proto(WEIGHTS["ip.0"]), blob_proto(WEIGHTS["ip.1"])])
    good = net.SerializeToString()
    old = {"net": b"\x0a\x03net", "layer": b"\x0a\x02ip", "bottom": b"\x1a\x01x"}[where]
    bad = good.replace(old, old[:2] + b"\xff" + old[3:], 1)
    assert bad != good
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(bad)
    (tmp_path / "net.yaml").write_text(NET.replace("num_output: 5", "num_output: 5\n"))
    for model in ((), ("--model", tmp_path / "net.yaml")):
        out = tmp_path / "w.safetensors"
        assert_one_error(cli("convert", path, out, *model), str(path))
        assert not out.exists()


def test_a_layer_tag_changed_by_a_flip_is_not_dropped_silently(tmp_path):
    data = caffemodel_bytes(tmp_path)
    at = data.index(b"\xa2\x06")  # field 100 (layer), length-delimited: the first layer's tag
    path = tmp_path / "tag.caffemodel"
    path.write_bytes(data[:at + 1] + b"\x07" + data[at + 2:])  # field 116: unknown to Caffe
    assert "field (number 116)" in refused(read_caffemodel, path)


def test_a_caffemodel_cut_between_layers_is_reported(tmp_path):
    """Cut exactly between two layers the file still parses: against the net, the layers it
    lacks are named; without one, a last layer holding weights is pointed out."""
    data = caffemodel_bytes(tmp_path)
    end_of_ip = data.rindex(b"\xa2\x06")  # the loss layer's tag
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(data[:end_of_ip])
    out = cli("convert", path, tmp_path / "w.safetensors")
    assert out.code == 0 and "last layer, 'ip', holds weights" in out.stdout, out.stdout
    path.write_bytes(data[:data.index(b"\xa2\x06", data.index(b"\xa2\x06") + 2)])  # conv only
    (tmp_path / "net.yaml").write_text(NET)
    out = cli("convert", path, tmp_path / "w2.safetensors", "--model", tmp_path / "net.yaml")
    assert out.code == 0 and "layers of the net not in the caffemodel" in out.stdout
    assert "file cut short): ip" in out.stdout


def test_absurd_blob_sizes_allocate_nothing(tmp_path):
    """A blob declaring 2**40 values, legacy dims of 2**31 - 1, a length prefix past the end: one
    line each, and nothing near the declared size is ever allocated."""
    huge = caffe_pb.BlobProto()
    huge.shape.dim.extend([2**20, 2**20])
    huge.data.extend([1.0, 2.0])
    legacy = caffe_pb.BlobProto(num=2**31 - 1, channels=2**31 - 1, height=1, width=1)
    legacy.data.append(1.0)
    cases = {}
    for name, blob in (("huge", huge), ("legacy", legacy)):
        net = caffe_pb.NetParameter(name="n")
        net.layer.add(name="ip", type="InnerProduct").blobs.append(blob)
        cases[name] = net.SerializeToString()
    layer = caffe_pb.LayerParameter(name="ip", type="InnerProduct").SerializeToString()
    cases["prefix"] = b"\xa2\x06" + varint(2**31 - 2) + layer   # a layer "2 GiB long"
    blob = b"\x2a" + varint(2**40) + bytes(8)                    # packed floats "1 TiB long"
    cases["packed"] = b"\xa2\x06" + varint(len(layer) + len(blob) + 2) + layer + b"\x3a" + \
        varint(len(blob)) + blob
    for name, data in cases.items():
        path = tmp_path / f"{name}.caffemodel"
        path.write_bytes(data)
        refused(lambda p: caffe_to_trainnet(read_caffemodel(p)), path)
        assert peak_bytes(lambda: read_caffemodel(path)) < 2**20, name
    state = caffe_pb.SolverState(iter=1, learned_net="w.caffemodel", current_step=0)
    state.history.append(huge)
    for path, data, load in ((tmp_path / "huge.binaryproto", huge.SerializeToString(), load_mean),
                             (tmp_path / "huge.solverstate", state.SerializeToString(), read_state)):
        path.write_bytes(data)
        assert "needs 1099511627776 values" in refused(load, path)
        assert peak_bytes(lambda: load(path)) < 2**20


# --- .binaryproto mean ---------------------------------------------------------------------------

def test_mean_file_family(tmp_path):
    save_blob(tmp_path / "m.binaryproto", RNG.uniform(0, 255, (1, 3, 6, 6)), legacy=True)
    check_family(tmp_path, (tmp_path / "m.binaryproto").read_bytes(), ".binaryproto", load_mean,
                 lambda mean: mean.shape, seed=3)


def test_a_mean_file_cut_after_its_dims_is_refused(tmp_path):
    """Cut after num and channels the blob parses as (1, 3, 0, 0): no values, not a mean."""
    save_blob(tmp_path / "m.binaryproto", np.ones((1, 3, 2, 2)), legacy=True)
    data = (tmp_path / "m.binaryproto").read_bytes()
    for cut in (2, 4):
        path = tmp_path / f"cut{cut}.binaryproto"
        path.write_bytes(data[:cut])
        assert "no values" in refused(load_mean, path)
