"""trainnet.caffe.net_spec: pycaffe's NetSpec, layers and params writing caffe_pb2 NetParameters
that trainnet reads, compiles and trains."""

from __future__ import annotations


import numpy as np
import pytest
from google.protobuf import text_format

from trainnet.caffe.net_spec import NetSpec, layers as L, params as P, to_proto
from trainnet.caffe.proto import caffe_pb2
from trainnet.errors import ConfigError
from trainnet.netcfg.net import load_net_text
from trainnet.netcfg.solver import load_solver_text
from trainnet.plan import compile_net
from trainnet.solver.solver import Solver



def lenet(source, batch_size, backend=None):
    """Caffe's examples/01-learning-lenet.ipynb, as written there."""
    n = NetSpec()
    data = dict(backend=backend) if backend is not None else {}
    n.data, n.label = L.Data(batch_size=batch_size, source=source, ntop=2,
                             transform_param=dict(scale=1. / 255), **data)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


def test_lenet_prototxt_is_caffes():
    proto = lenet("mnist_train_lmdb", 64, backend=P.Data.LMDB)
    assert isinstance(proto, caffe_pb2.NetParameter)
    assert [l.name for l in proto.layer] == ["data", "conv1", "pool1", "conv2", "pool2", "fc1",
                                             "relu1", "score", "loss"]
    text = str(proto)
    assert 'data_param {\n    source: "mnist_train_lmdb"\n    batch_size: 64\n    backend: LMDB\n' in text
    assert ('convolution_param {\n    num_output: 20\n    kernel_size: 5\n    weight_filler {\n'
            '      type: "xavier"\n') in text
    relu = proto.layer[6]
    assert list(relu.bottom) == ["fc1"] and list(relu.top) == ["fc1"]   # in place
    assert list(proto.layer[7].bottom) == ["fc1"]
    assert text_format.Parse(text, caffe_pb2.NetParameter()) == proto


def test_lenet_loads_compiles_and_trains(tmp_path, mnist_dir):
    proto = lenet(str(mnist_dir / "train-images-idx3-ubyte.gz"), 16)
    net = tmp_path / "lenet.prototxt"
    net.write_text(str(proto))
    cfg = load_net_text(net.read_text(), str(net))
    assert [l.type for l in cfg.layer][-1] == "SoftmaxWithLoss"
    assert cfg.layer[0].transform_param.scale == pytest.approx(1 / 255)
    plan = compile_net(cfg, "TRAIN")
    assert [s.name for s in plan.steps][-1] == "loss" and plan.param_count == 431080
    solver = load_solver_text(f'net: "{net}"\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: "fixed"\n'
                              f'max_iter: 60\nsnapshot_after_train: false\nrandom_seed: 1\n'
                              f'snapshot_prefix: "{tmp_path}/out"\n', str(tmp_path / "s.prototxt"))
    trainer = Solver(solver, log=lambda line: None)
    losses = []
    for _ in range(60):
        trainer.step_once()
        losses.append(trainer.net.loss())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])   # it learns


def test_layer_parameter_fields():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 4, 4]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, name="conv_layer",
                           param=[dict(lr_mult=1), dict(lr_mult=2, decay_mult=0)],
                           include=dict(phase=caffe_pb2.TRAIN), bias_filler=dict(value=0.1))
    n.a, n.b = L.Slice(n.conv, slice_point=2, ntop=2)
    n.loss = L.EuclideanLoss(n.a, n.b, loss_weight=0.5)
    n.silence = L.Silence(n.b, ntop=0)
    proto = n.to_proto()
    layer = proto.layer[1]
    assert layer.name == "conv_layer" and list(layer.top) == ["conv"]
    assert [(p.lr_mult, p.decay_mult) for p in layer.param] == [(1, 1), (2, 0)]
    assert layer.include[0].phase == caffe_pb2.TRAIN
    assert layer.convolution_param.bias_filler.value == pytest.approx(0.1)
    assert list(proto.layer[0].input_param.shape[0].dim) == [2, 3, 4, 4]
    assert list(proto.layer[2].top) == ["a", "b"] and list(proto.layer[2].slice_param.slice_point) == [2]
    assert list(proto.layer[3].loss_weight) == [0.5]
    assert proto.layer[4].name == "silence" and not proto.layer[4].top
    cfg = load_net_text(str(proto), "n.prototxt")
    assert cfg.layer[1].include[0].phase == "TRAIN" and cfg.layer[1].param[1].decay_mult == 0


def test_auto_names_and_to_proto_of_tops():
    data = L.Input(shape=dict(dim=[1, 2]))
    top = L.ReLU(L.ReLU(data))
    proto = to_proto(top)
    assert [l.name for l in proto.layer] == ["Input1", "ReLU1", "ReLU2"]
    assert list(proto.layer[2].bottom) == ["ReLU1"]
    assert top.to_proto() == to_proto(top)
    silent = L.Silence(data, ntop=0)
    n = NetSpec()
    n.x = data
    n.s = silent
    assert [l.name for l in n.to_proto().layer] == ["x", "s"]


def test_parameters_go_where_the_layer_type_keeps_them():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[2, 5]))
    n.y = L.Input(shape=dict(dim=[2]))
    n.loss = L.SoftmaxWithLoss(n.x, n.y, axis=1, normalization=P.Loss.VALID, ignore_label=3)
    n.up = L.Deconvolution(n.x, num_output=2, kernel_size=2, convolution_param=dict(stride=[2]))
    layer, up = n.to_proto().layer[2:]
    assert layer.softmax_param.axis == 1 and layer.loss_param.ignore_label == 3
    assert layer.loss_param.normalization == caffe_pb2.LossParameter.VALID
    assert up.convolution_param.num_output == 2 and list(up.convolution_param.stride) == [2]
    assert P.Deconvolution is caffe_pb2.ConvolutionParameter
    assert (P.Pooling.AVE, P.Eltwise.PROD, P.Data.LMDB) == (1, 0, 1)


def test_unknown_layer_type_is_named():
    with pytest.raises(ConfigError, match="Convolutoin") as info:
        L.Convolutoin(num_output=3)
    assert "Convolution" in str(info.value)   # the known types are listed


def test_unknown_parameter_is_named():
    data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    with pytest.raises(ConfigError, match="unknown parameter 'num_outputs'.*Convolution") as info:
        L.Convolution(data, num_outputs=3)
    assert "num_output" in str(info.value) and info.value.field == "num_outputs"


def test_a_value_that_does_not_fit_is_named():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    n.conv = L.Convolution(n.data, num_output="many")
    with pytest.raises(ConfigError, match="num_output") as info:
        n.to_proto()
    assert info.value.layer == "conv"
    with pytest.raises(AttributeError, match="NoSuch"):
        P.NoSuch
