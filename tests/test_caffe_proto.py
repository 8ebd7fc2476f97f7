"""trainnet.caffe.proto.caffe_pb2: Caffe's messages built from trainnet's schema with Caffe's
field numbers, read and written through google.protobuf like pycaffe's caffe_pb2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import _dataset
from google.protobuf import text_format

from trainnet.caffe.proto import caffe_pb2
from trainnet.formats.blobproto import load_blob, load_mean
from trainnet.formats.caffemodel import read_caffemodel, write_caffemodel
from trainnet.netcfg import load_net, load_solver
from trainnet.netcfg.layer_types import registered
from trainnet.netcfg.net import dump_net, load_net_text
from trainnet.netcfg.solver import load_solver_text
from trainnet.netcfg.to_prototxt import dump_net_prototxt, dump_solver_prototxt

ROOT = Path(__file__).parent.parent


@pytest.fixture
def lenet_dir() -> Path:
    """Caffe's LeNet (prototxt and trained caffemodel) from the data root."""
    return _dataset("caffe/lenet", "lenet_iter_10000.caffemodel", "Caffe's trained LeNet")
EVERY_TYPE_DIR = Path(__file__).parent / "every_type"
CONFIG_NETS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "solver" not in p.name)
CONFIG_SOLVERS = sorted(p for p in (ROOT / "configs").rglob("*solver*.yaml"))


def round_trip(text: str, message) -> str:
    first = text_format.Parse(text, message)
    printed = text_format.MessageToString(first)
    again = text_format.Parse(printed, type(message)())
    assert again == first
    assert again.SerializeToString() == first.SerializeToString()
    return printed


def every_type_net() -> str:
    parts = [f.read_text() for f in sorted(EVERY_TYPE_DIR.glob("*.yaml"))]
    return "name: every-type\nforce_backward: true\nlayer:\n" + "".join(parts)


def test_every_schema_field_has_a_caffe_number():
    assert caffe_pb2.UNNUMBERED == (), (
        "schema fields without a Caffe field number: add them to trainnet/caffe/proto/numbers.py")


def test_every_layer_type_has_its_parameter_messages():
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for type_name, cls in registered().items():
        for message in cls.caffe_params:
            assert message in fields, (type_name, message)
            inner = fields[message].message_type.fields_by_name
            assert set(cls.caffe_params[message] or ()) <= set(inner), (type_name, message)


@pytest.mark.parametrize("message, field, number", [
    ("NetParameter", "layer", 100), ("NetParameter", "layers", 2), ("LayerParameter", "top", 4),
    ("LayerParameter", "convolution_param", 106), ("LayerParameter", "batch_norm_param", 139),
    ("ConvolutionParameter", "stride", 6), ("ConvolutionParameter", "dilation", 18),
    ("PoolingParameter", "round_mode", 13), ("SolverParameter", "type", 40),
    ("V1LayerParameter", "convolution_param", 10), ("BlobProto", "shape", 7),
])
def test_numbers_are_caffes(message, field, number):
    assert getattr(caffe_pb2, message).DESCRIPTOR.fields_by_name[field].number == number


def test_enums_and_defaults_are_caffes():
    assert (caffe_pb2.PoolingParameter.MAX, caffe_pb2.PoolingParameter.AVE) == (0, 1)
    assert caffe_pb2.EltwiseParameter.PROD == 0 and caffe_pb2.ReductionParameter.MEAN == 4
    assert caffe_pb2.LossParameter.VALID == 1 and caffe_pb2.DataParameter.LMDB == 1
    assert (caffe_pb2.TRAIN, caffe_pb2.TEST) == (0, 1) and caffe_pb2.Phase.Name(1) == "TEST"
    assert caffe_pb2.V1LayerParameter.CONVOLUTION == 4
    conv = caffe_pb2.ConvolutionParameter()
    assert conv.bias_term is True and conv.group == 1 and conv.engine == conv.DEFAULT
    assert caffe_pb2.SolverParameter().solver_mode == caffe_pb2.SolverParameter.GPU
    assert caffe_pb2.FillerParameter().type == "constant"
    assert caffe_pb2.ParamSpec().lr_mult == 1.0 and caffe_pb2.NetState().phase == caffe_pb2.TEST


def test_lenet_prototxt_round_trips(lenet_dir):
    text = (lenet_dir / "lenet.prototxt").read_text()
    printed = round_trip(text, caffe_pb2.NetParameter())
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    assert [l.type for l in net.layer][:3] == ["Input", "Convolution", "Pooling"]
    assert net.layer[1].convolution_param.num_output == 20
    assert net.layer[2].pooling_param.pool == caffe_pb2.PoolingParameter.MAX
    # what protobuf prints trainnet reads as the same net
    assert dump_net(load_net_text(printed, "x.prototxt")) == dump_net(load_net(lenet_dir / "lenet.prototxt"))


@pytest.mark.parametrize("path", CONFIG_NETS + [EVERY_TYPE_DIR], ids=lambda p: p.name)
def test_trainnet_prototxt_parses_and_round_trips(path):
    cfg = load_net_text(every_type_net(), "every.yaml") if path.is_dir() else load_net(path)
    printed = round_trip(dump_net_prototxt(cfg), caffe_pb2.NetParameter())
    assert dump_net(load_net_text(printed, "x.prototxt")) == dump_net(cfg)


@pytest.mark.parametrize("path", CONFIG_SOLVERS, ids=lambda p: p.name)
def test_solver_prototxt_parses(path):
    cfg = load_solver(path)
    printed = round_trip(dump_solver_prototxt(cfg), caffe_pb2.SolverParameter())
    solver = text_format.Parse(printed, caffe_pb2.SolverParameter())
    assert solver.base_lr == pytest.approx(cfg.base_lr) and solver.max_iter == cfg.max_iter


def test_caffe_solver_text_parses():
    text = ('net: "lenet_train_test.prototxt"\ntest_iter: 100\ntest_interval: 500\n'
            'base_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "inv"\n'
            'gamma: 0.0001\npower: 0.75\ndisplay: 100\nmax_iter: 10000\nsnapshot: 5000\n'
            'snapshot_prefix: "examples/mnist/lenet"\nsolver_mode: GPU\nsolver_type: NESTEROV\n')
    solver = text_format.Parse(text, caffe_pb2.SolverParameter())
    assert list(solver.test_iter) == [100] and solver.lr_policy == "inv"
    assert solver.solver_type == caffe_pb2.SolverParameter.NESTEROV
    round_trip(text, caffe_pb2.SolverParameter())
    assert load_solver_text(text.replace("solver_mode: GPU\n", ""), "s.prototxt").type == "Nesterov"


def test_v1_net_parses():
    text = ('name: "old"\ninput: "data"\ninput_dim: 1\ninput_dim: 1\ninput_dim: 8\ninput_dim: 8\n'
            'layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 '
            'blobs_lr: 2 weight_decay: 1 convolution_param { num_output: 4 kernel_size: 3 } }\n'
            'layers { name: "d" type: DATA top: "x" data_param { source: "db" batch_size: 2 '
            'scale: 0.5 backend: LMDB } }\n')
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    assert net.layers[0].type == caffe_pb2.V1LayerParameter.CONVOLUTION
    assert list(net.layers[0].blobs_lr) == [1.0, 2.0] and net.layers[1].data_param.scale == 0.5
    round_trip(text, caffe_pb2.NetParameter())


def test_real_caffemodel_parses(lenet_dir):
    path = next(lenet_dir.glob("*.caffemodel"))
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    ours = read_caffemodel(path)
    entries = net.layer or net.layers
    assert [l.name for l in entries] == [l.name for l in ours.layers]
    for entry, layer in zip(entries, ours.layers):
        assert len(entry.blobs) == len(layer.blobs)
        for blob, array in zip(entry.blobs, layer.blobs):
            np.testing.assert_array_equal(np.asarray(blob.data, np.float32), array.ravel())
    conv = next(l for l in net.layer if l.type == "Convolution")
    assert conv.convolution_param.num_output == 20 and conv.convolution_param.kernel_size == [5]


def test_caffemodel_written_through_caffe_pb2_loads_with_trainnet(tmp_path):
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((4, 3, 2, 2), np.float32), rng.standard_normal(4, np.float32)
    net = caffe_pb2.NetParameter(name="tiny")
    layer = net.layer.add(name="conv", type="Convolution", bottom=["data"], top=["conv"])
    layer.convolution_param.num_output = 4
    layer.convolution_param.kernel_size.append(2)
    for array in (weight, bias):
        blob = layer.blobs.add()
        blob.shape.dim.extend(array.shape)
        blob.data.extend(array.ravel().tolist())
    (tmp_path / "tiny.caffemodel").write_bytes(net.SerializeToString())
    model = read_caffemodel(tmp_path / "tiny.caffemodel")
    assert model.name == "tiny" and model.layers[0].type == "Convolution"
    np.testing.assert_array_equal(model.layers[0].blobs[0], weight)
    np.testing.assert_array_equal(model.layers[0].blobs[1], bias)
    # and the other way: trainnet's writer, read through caffe_pb2
    write_caffemodel(tmp_path / "back.caffemodel", "tiny", [("conv", "Convolution", [weight, bias])])
    back = caffe_pb2.NetParameter.FromString((tmp_path / "back.caffemodel").read_bytes())
    assert list(back.layer[0].blobs[0].shape.dim) == [4, 3, 2, 2]
    np.testing.assert_array_equal(np.asarray(back.layer[0].blobs[1].data, np.float32), bias)


def test_binary_files_messages():
    datum = caffe_pb2.Datum(channels=1, height=2, width=2, data=b"\x00\x01\x02\x03", label=7)
    assert caffe_pb2.Datum.FromString(datum.SerializeToString()).label == 7
    vector = caffe_pb2.BlobProtoVector()
    vector.blobs.add().shape.dim.extend([1, 2])
    assert caffe_pb2.BlobProtoVector.FromString(vector.SerializeToString()) == vector


def test_blobproto_files_interoperate(tmp_path, cifar_dir):
    mean_file = cifar_dir / "mean.binaryproto"
    blob = caffe_pb2.BlobProto.FromString(mean_file.read_bytes())
    mean = load_mean(mean_file)
    np.testing.assert_array_equal(np.asarray(blob.data, np.float32), mean.ravel())
    written = caffe_pb2.BlobProto()
    written.shape.dim.extend([2, 3])
    written.data.extend([0.5, 1, 2, 3, 4, 5])
    (tmp_path / "b.binaryproto").write_bytes(written.SerializeToString())
    np.testing.assert_array_equal(load_blob(tmp_path / "b.binaryproto"),
                                  np.array([[0.5, 1, 2], [3, 4, 5]], np.float32))
