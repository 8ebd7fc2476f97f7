"""Caffe's binary weights (.caffemodel): reading the three forms, writing, converting to and from
trainnet's weight keys, loading into a net (also through the CLI) and clear errors for bad files."""

import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, data_root
from trainnet.cli import main
from trainnet.errors import TrainnetError
from trainnet.layers import known_types
from trainnet.netcfg import load_net
from trainnet.netcfg.net import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.net import Net
from trainnet.solver.weights import EXACT, load_weights
from trainnet.formats import caffe_pb
from trainnet.formats.weightkey import weight_key
from trainnet.formats.caffemodel import (CaffeLayer, caffe_to_trainnet, read_caffemodel,
                                     trainnet_to_caffe, write_caffemodel)

LENET_YAML = ROOT / "configs/lenet/lenet_train_test.yaml"
LENET_SHAPES = {"conv1": [(20, 1, 5, 5), (20,)], "conv2": [(50, 20, 5, 5), (50,)],
                "ip1": [(500, 800), (500,)], "ip2": [(10, 500), (10,)]}


@pytest.fixture
def lenet_model() -> Path:
    """Caffe's LeNet trained 10000 iterations on MNIST; skips outside CI when absent."""
    root = data_root()
    path = root / "caffe/lenet/lenet_iter_10000.caffemodel" if root else None
    if path is None or not path.is_file():
        msg = "lenet_iter_10000.caffemodel not found: set TRAINNET_DATA to a folder holding caffe/lenet"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def legacy_blob(blob, array):
    """Fill ``blob`` the way V0/V1-era Caffe wrote it: 4-D num/channels/height/width."""
    shape = (1,) * (4 - array.ndim) + array.shape
    blob.num, blob.channels, blob.height, blob.width = shape
    blob.data.extend(array.ravel().tolist())


def values(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def write(path, net):
    path.write_bytes(net.SerializeToString())
    return path


# --- reading and writing -------------------------------------------------------------------------

def test_read_lenet(lenet_model):
    model = read_caffemodel(lenet_model)
    assert model.name == "LeNet" and model.form == "layer"
    assert [l.name for l in model.layers] == ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1",
                                              "relu1", "ip2", "loss"]
    with_blobs = {l.name: l for l in model.layers if l.blobs}
    assert {n: [b.shape for b in l.blobs] for n, l in with_blobs.items()} == LENET_SHAPES
    assert [with_blobs[n].type for n in LENET_SHAPES] == ["Convolution", "Convolution",
                                                          "InnerProduct", "InnerProduct"]
    assert with_blobs["ip1"].bottom == ("pool2",) and with_blobs["ip1"].top == ("ip1",)
    for layer in with_blobs.values():
        assert all(b.dtype == np.float32 and np.isfinite(b).all() and b.std() > 0 for b in layer.blobs)


def test_write_read_round_trip(tmp_path, lenet_model):
    model = read_caffemodel(lenet_model)
    out = tmp_path / "copy.caffemodel"
    write_caffemodel(out, model.name, model.layers)
    again = read_caffemodel(out)
    assert again.name == model.name and again.form == "layer"
    for a, b in zip(model.layers, again.layers, strict=True):
        assert (a.name, a.type, a.bottom, a.top) == (b.name, b.type, b.bottom, b.top)
        for x, y in zip(a.blobs, b.blobs, strict=True):
            np.testing.assert_array_equal(x, y)
            assert x.shape == y.shape
    raw = caffe_pb.NetParameter()
    raw.ParseFromString(out.read_bytes())
    blob = raw.layer[5].blobs[0]  # ip1's weight, written as current Caffe does: a BlobShape
    assert list(blob.shape.dim) == [500, 800] and not blob.HasField("num")
    assert not list(out.parent.glob("*.tmp"))


def test_plain_tuples_and_empty_blobs(tmp_path):
    path = tmp_path / "t.caffemodel"
    write_caffemodel(path, "t", [("a", "Scale", [np.float32(2.5) * np.ones((), np.float32)]),
                                 ("b", "ReLU", [])])
    model = read_caffemodel(path)
    assert model.layers[0].blobs[0].shape == () and model.layers[0].blobs[0] == 2.5
    assert model.layers[1] == CaffeLayer("b", "ReLU", [], (), ())


def test_v1_form_converts_legacy_shapes(tmp_path):
    conv_w, conv_b, ip_w, ip_b = values(2, 1, 3, 3), values(2, seed=1), values(4, 18, seed=2), values(4, seed=3)
    net = caffe_pb.NetParameter(name="v1")
    conv = net.layers.add(name="conv", type=caffe_pb.V1_LAYER_TYPES["CONVOLUTION"])
    conv.bottom.append("data")
    conv.top.append("conv")
    net.layers.add(name="relu", type=caffe_pb.V1_LAYER_TYPES["RELU"])
    ip = net.layers.add(name="ip", type=caffe_pb.V1_LAYER_TYPES["INNER_PRODUCT"])
    for layer, arrays in ((conv, (conv_w, conv_b)), (ip, (ip_w, ip_b))):
        for a in arrays:
            legacy_blob(layer.blobs.add(), a)
    model = read_caffemodel(write(tmp_path / "v1.caffemodel", net))
    assert model.form == "V1"
    assert [(l.name, l.type) for l in model.layers] == [("conv", "Convolution"), ("relu", "ReLU"),
                                                        ("ip", "InnerProduct")]
    assert model.layers[0].bottom == ("data",) and model.layers[0].top == ("conv",)
    assert [b.shape for b in model.layers[2].blobs] == [(1, 1, 4, 18), (1, 1, 1, 4)]  # as stored
    weights = caffe_to_trainnet(model)
    assert {k: v.shape for k, v in weights.items()} == {
        "conv.0": (2, 1, 3, 3), "conv.1": (2,), "ip.0": (4, 18), "ip.1": (4,)}
    for key, a in zip(weights, (conv_w, conv_b, ip_w, ip_b)):
        np.testing.assert_array_equal(weights[key], a)
    fitted = caffe_to_trainnet(model, {"conv.0": (2, 1, 3, 3), "conv.1": (2,), "ip.0": (4, 18),
                                       "ip.1": (4,)})
    assert {k: v.shape for k, v in fitted.items()} == {k: v.shape for k, v in weights.items()}


def test_v0_form(tmp_path):
    w, b = values(3, 8), values(3, seed=1)
    net = caffe_pb.NetParameter(name="v0")
    entry = net.layers.add()
    entry.bottom.append("data")
    entry.top.append("fc")
    entry.layer.name, entry.layer.type = "fc", "innerproduct"
    for a in (w, b):
        legacy_blob(entry.layer.blobs.add(), a)
    pool = net.layers.add()
    pool.layer.name, pool.layer.type = "pool", "pool"
    model = read_caffemodel(write(tmp_path / "v0.caffemodel", net))
    assert model.form == "V0"
    assert [(l.name, l.type, l.bottom, l.top) for l in model.layers] == [
        ("fc", "InnerProduct", ("data",), ("fc",)), ("pool", "Pooling", (), ())]
    weights = caffe_to_trainnet(model)
    assert weights["fc.0"].shape == (3, 8) and weights["fc.1"].shape == (3,)
    np.testing.assert_array_equal(weights["fc.0"], w)


def test_double_data(tmp_path):
    net = caffe_pb.NetParameter(name="d")
    layer = net.layer.add(name="ip", type="InnerProduct")
    exact = np.array([[0.1, -2.0, 3.25], [1e-3, 5.0, -0.5]])
    blob = layer.blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.double_data.extend(exact.ravel().tolist())
    bias = layer.blobs.add()
    bias.shape.dim.append(2)
    bias.data.extend([1.0, 2.0])
    model = read_caffemodel(write(tmp_path / "d.caffemodel", net))
    np.testing.assert_array_equal(model.layers[0].blobs[0], exact.astype(np.float32))
    assert model.layers[0].blobs[0].dtype == np.float32


def test_fit_to_targets_and_per_type_rules(tmp_path):
    """With the net's shapes, blobs differing only by leading/trailing 1s are reshaped (BatchNorm's
    statistics stored 4-D); without them PReLU's legacy 4-D slope becomes 1-D."""
    path = tmp_path / "bn.caffemodel"
    stats = [values(1, 3, 1, 1), values(1, 3, 1, 1, seed=1), np.full((1, 1, 1, 1), 7, np.float32)]
    write_caffemodel(path, "bn", [("bn", "BatchNorm", stats), ("prelu", "PReLU", [values(1, 3, 1, 1)])])
    model = read_caffemodel(path)
    fitted = caffe_to_trainnet(model, {"bn.0": (3,), "bn.1": (3,), "bn.2": (1,), "prelu.0": (3,)})
    assert [fitted[f"bn.{i}"].shape for i in range(3)] == [(3,), (3,), (1,)]
    assert fitted["bn.2"][0] == 7
    prelu = caffe_to_trainnet(only_layer(model, "prelu"))
    assert prelu["prelu.0"].shape == (3,)


def only_layer(model, name):
    return replace(model, layers=[l for l in model.layers if l.name == name])


# --- errors: one clear TrainnetError each ----------------------------------------------------------

def test_truncated_and_garbage_files(tmp_path, lenet_model):
    data = lenet_model.read_bytes()
    cases = {
        "half.caffemodel": data[:len(data) // 2],
        "garbage.caffemodel": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "text.caffemodel": b"name: 'LeNet'\nlayer { name: 'conv1' }\n",
        "zeros.caffemodel": bytes(64),
        "unknown_only.caffemodel": b"\x28\x01",  # parses (force_backward: true) but holds no layers
        "empty.caffemodel": b"",
        "hdf5.caffemodel": b"\x89HDF\r\n\x1a\n" + bytes(100),
    }
    for name, raw in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(TrainnetError) as exc:
            read_caffemodel(path)
        message = str(exc.value)
        assert str(path) in message and "\n" not in message, message
        assert re.search(r"truncated|corrupt|not a Caffe model|empty file|HDF5", message), message
    with pytest.raises(TrainnetError, match="no such Caffe model"):
        read_caffemodel(tmp_path / "missing.caffemodel")


def test_too_large_file_refused(tmp_path, monkeypatch):
    from trainnet.formats import blobproto
    path = tmp_path / "big.caffemodel"
    path.write_bytes(bytes(100))
    monkeypatch.setattr(blobproto, "MAX_BYTES", 50)
    with pytest.raises(TrainnetError, match="more than a protobuf message may hold"):
        read_caffemodel(path)


def test_blob_count_mismatch_names_the_layer(tmp_path):
    net = caffe_pb.NetParameter(name="bad")
    blob = net.layer.add(name="fc7", type="InnerProduct").blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0] * 5)
    with pytest.raises(TrainnetError, match=r"layer 'fc7' blob 0: shape \(2, 3\) needs 6 values but "
                                            r"the blob holds 5"):
        read_caffemodel(write(tmp_path / "bad.caffemodel", net))


def test_unknown_type_with_blobs_is_refused(tmp_path):
    path = tmp_path / "u.caffemodel"
    write_caffemodel(path, "u", [("norm", "FancyNorm", []), ("x", "Foo", [values(3)]),
                                 ("ip", "InnerProduct", [values(2, 3)])])
    model = read_caffemodel(path)
    with pytest.raises(TrainnetError, match="layer 'x' has type 'Foo', which trainnet does not implement"):
        caffe_to_trainnet(model, known_types=known_types())
    # loading into a net that lacks the layer: reported as skipped, as Caffe ignores it
    assert set(caffe_to_trainnet(model, {"ip.0": (2, 3)})) == {"x.0", "ip.0"}


def test_shape_and_blob_count_mismatch_against_the_net(tmp_path):
    path = tmp_path / "m.caffemodel"
    write_caffemodel(path, "m", [("ip", "InnerProduct", [values(1, 1, 4, 18), values(4)])])
    model = read_caffemodel(path)
    with pytest.raises(TrainnetError, match=r"layer 'ip' blob 0: shape \(1, 1, 4, 18\) in the file "
                                            r"but \(4, 20\) in the net"):
        caffe_to_trainnet(model, {"ip.0": (4, 20), "ip.1": (4,)})
    with pytest.raises(TrainnetError, match="layer 'ip' .*2 blobs in the file but 1 in the net"):
        caffe_to_trainnet(model, {"ip.0": (4, 18)})


# --- trainnet weights -> Caffe ------------------------------------------------------------------------

def test_trainnet_to_caffe_shares_by_param_name(tmp_path):
    cfg = load_net_text(
        "name: shared\nlayer:\n"
        "  - {name: in, type: Input, top: data, shape: {dim: [2, 3]}}\n"
        "  - {name: a, type: InnerProduct, bottom: data, top: a, num_output: 3, param: [{name: w}, {name: b}]}\n"
        "  - {name: b, type: InnerProduct, bottom: a, top: b, num_output: 3, param: [{name: w}, {name: b}]}\n",
        "shared.yaml")
    weights = {"a.0": values(3, 3), "a.1": values(3, seed=1)}
    layers = trainnet_to_caffe(weights, cfg)
    assert [(l.name, l.type, len(l.blobs)) for l in layers] == [("in", "Input", 0), ("a", "InnerProduct", 2),
                                                               ("b", "InnerProduct", 2)]
    np.testing.assert_array_equal(layers[2].blobs[0], weights["a.0"])
    assert layers[2].bottom == ("a",) and layers[2].top == ("b",)
    with pytest.raises(TrainnetError, match="blobs the net's layers do not have: zz.0"):
        trainnet_to_caffe({**weights, "zz.0": values(2)}, cfg)


# --- loading into a net, and the CLI -----------------------------------------------------------------

def lenet_test_net():
    return Net(compile_net(load_net(LENET_YAML), "TEST", backward=False), rng=np.random.default_rng(0))


def test_load_weights_into_lenet(lenet_model, mnist_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    net = lenet_test_net()
    report = load_weights(lenet_model, net.params, EXACT)
    loaded = report.loaded_layers
    assert loaded == ["conv1", "conv2", "ip1", "ip2"] and report.skipped == []
    model = read_caffemodel(lenet_model)
    named = net.params.named()
    for layer in model.layers:
        for j, blob in enumerate(layer.blobs):
            np.testing.assert_array_equal(named[weight_key(layer.name, j)], blob)
    # by content when the suffix says nothing; and back through trainnet_to_caffe
    (tmp_path / "weights.bin").write_bytes(lenet_model.read_bytes())
    assert load_weights(tmp_path / "weights.bin", lenet_test_net().params, EXACT).loaded_layers == loaded
    out = tmp_path / "back.caffemodel"
    write_caffemodel(out, "LeNet", trainnet_to_caffe(net.params.named_host(), load_net(LENET_YAML)))
    back = read_caffemodel(out)
    back.layers.remove(next(l for l in back.layers if l.name == "accuracy"))  # a TEST layer
    assert [(l.name, l.type) for l in back.layers] == [(l.name, l.type) for l in model.layers]
    for a, b in zip(model.layers, back.layers):
        for x, y in zip(a.blobs, b.blobs, strict=True):
            np.testing.assert_array_equal(x, y)


def run_cli(*args, env):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def test_cli_test_and_finetune_from_caffemodel(lenet_model, mnist_dir, tmp_path):
    env = {"TRAINNET_DATA": str(mnist_dir.parent)}
    code, out = run_cli("test", "--model", LENET_YAML, "--weights", lenet_model, "--iterations", 10,
                        "--device", "cpu", env=env)
    assert code == 0, out
    accuracy = float(re.search(r"accuracy = ([\d.]+)", out).group(1))
    assert accuracy >= 0.98, out
    solver = tmp_path / "solver.yaml"
    solver.write_text(f"net: {LENET_YAML}\nbase_lr: 0.001\nlr_policy: fixed\nmax_iter: 2\ndisplay: 1\n"
                      f"snapshot_prefix: {tmp_path}/ft\nsnapshot_after_train: false\n")
    code, out = run_cli("train", solver, "--weights", lenet_model, "--device", "cpu", env=env)
    assert code == 0, out
    assert "Loaded weights for 4 layers" in out and "conv1, conv2, ip1, ip2" in out
    bad = tmp_path / "half.caffemodel"
    bad.write_bytes(lenet_model.read_bytes()[:100000])
    code, out = run_cli("test", "--model", LENET_YAML, "--weights", bad, "--device", "cpu", env=env)
    assert code == 1 and "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert str(bad) in out and "truncated or corrupt one" in out
