"""Python layers seen through pycaffe's API: caffe.Layer is the base a user's layer subclasses,
net.layers shows the user's own object, its blobs are the net's parameters, and a Python loss
trains through caffe.get_solver."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent / "pylayers"))  # as a user's PYTHONPATH would

from tn_pylayers import Scale  # noqa: E402
from trainnet import caffe  # noqa: E402

NET = """name: "py"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "scale" type: "Python" bottom: "data" top: "scaled"
        python_param { module: "tn_pylayers" layer: "Scale" param_str: "2.5" } }
"""


def test_a_python_layer_in_a_pycaffe_net(tmp_path):
    assert issubclass(Scale, caffe.Layer)
    model = tmp_path / "py.prototxt"
    model.write_text(NET)
    net = caffe.Net(str(model), caffe.TEST)
    user = net.layers[1]
    assert isinstance(user, Scale) and user.type == "Python" and user.param_str == "2.5"
    assert net.layer_dict["scale"] is user and net._layer_names == ["data", "scale"]
    assert net.params["scale"][0].data.tolist() == [2.5]
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(net.forward(data=x)["scaled"], 2.5 * x)
    net.params["scale"][0].data[...] = -1   # net surgery reaches the user's blob
    np.testing.assert_array_equal(user.blobs[0].data, [-1])
    np.testing.assert_array_equal(net.forward(data=x)["scaled"], -x)


SOLVER = """net: "{net}"
base_lr: 0.1
lr_policy: "fixed"
max_iter: 60
display: 0
random_seed: 3
snapshot_prefix: "{prefix}"
"""

TRAIN = """name: "pyloss"
layer { name: "x" type: "DummyData" top: "x"
        dummy_data_param { shape { dim: 8 dim: 4 } data_filler { type: "gaussian" std: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "Python" bottom: "y" bottom: "x" top: "loss" loss_weight: 1
        python_param { module: "tn_pylayers" layer: "EuclideanLoss" } }
"""


def test_a_python_loss_trains_through_get_solver(tmp_path):
    """The net learns the identity with Caffe's pyloss.py EuclideanLoss as its loss."""
    (tmp_path / "train.prototxt").write_text(TRAIN)
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text(SOLVER.format(net=tmp_path / "train.prototxt", prefix=tmp_path / "s"))
    solver = caffe.get_solver(str(solver_file))
    solver.step(1)
    first = solver.net.blobs["loss"].data.item()
    solver.step(59)
    assert solver.net.blobs["loss"].data.item() < 0.2 * first


def test_python_blobs_are_the_nets_before_any_pass(tmp_path):
    model = tmp_path / "py.prototxt"
    model.write_text(NET)
    net = caffe.Net(str(model), caffe.TEST)
    net.layer_dict["scale"].blobs[0].data[...] = 5
    assert net.params["scale"][0].data.tolist() == [5.0]
    x = np.ones((4, 3), np.float32)
    np.testing.assert_array_equal(net.forward(data=x)["scaled"], 5 * x)


def test_a_replan_keeps_the_python_layers_object(tmp_path):
    """As pycaffe: reshaping the net's input calls the same object's reshape; its state stays."""
    model = tmp_path / "py.prototxt"
    model.write_text(NET)
    net = caffe.Net(str(model), caffe.TEST)
    user = net.layers[1]
    user.note = "kept"
    net.params["scale"][0].data[...] = 4
    net.blobs["data"].reshape(2, 3)
    out = net.forward(data=np.ones((2, 3), np.float32))["scaled"]
    assert net.layers[1] is user and user.note == "kept"
    np.testing.assert_array_equal(out, np.full((2, 3), 4, np.float32))
    np.testing.assert_array_equal(user.blobs[0].data, [4])


MEMORY = """name: "mem"
layer { name: "m" type: "MemoryData" top: "x" top: "y"
        memory_data_param { batch_size: 2 channels: 1 height: 1 width: 3 } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z"
        inner_product_param { num_output: 2 } }
"""


def test_set_input_arrays_feeds_a_memory_data_layer(tmp_path):
    model = tmp_path / "mem.prototxt"
    model.write_text(MEMORY)
    net = caffe.Net(str(model), caffe.TEST)
    data = np.arange(12, dtype=np.float32).reshape(4, 1, 1, 3)
    labels = np.arange(4, dtype=np.float32)
    net.set_input_arrays(data, labels)
    for batch in range(2):
        net.forward()
        np.testing.assert_array_equal(net.blobs["x"].data, data[2 * batch:2 * batch + 2])
        np.testing.assert_array_equal(net.blobs["y"].data.reshape(-1), labels[2 * batch:2 * batch + 2])
