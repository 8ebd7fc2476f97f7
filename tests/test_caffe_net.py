"""pycaffe's Net (trainnet.caffe.Net), from pycaffe's documented behaviour: net surgery on
Caffe's LeNet, feature extraction, forward and backward from and to a layer against NumPy,
reshaping, saving in Caffe's formats, and the packed plan with ``keep``."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import _dataset
from trainnet import caffe
from trainnet.formats.caffemodel import read_caffemodel


@pytest.fixture
def lenet():
    folder = _dataset("caffe/lenet", "lenet_iter_10000.caffemodel", "Caffe's trained LeNet")
    return folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"


def images(n=64, seed=0):
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def head(net, pool2):
    """LeNet from pool2 on, in NumPy: ip1, ReLU (in place), ip2, softmax."""
    (w1, b1), (w2, b2) = [[b.data for b in net.params[n]] for n in ("ip1", "ip2")]
    ip1 = np.maximum(pool2.reshape(len(pool2), -1) @ w1.T + b1, 0)
    ip2 = ip1 @ w2.T + b2
    return ip1, ip2, softmax(ip2)


def test_what_a_net_shows(lenet):
    net = caffe.Net(str(lenet[0]), caffe.TEST)
    assert list(net.blobs) == ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "prob"]
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    assert {k: [b.shape for b in v] for k, v in net.params.items()} == {
        "conv1": [(20, 1, 5, 5), (20,)], "conv2": [(50, 20, 5, 5), (50,)],
        "ip1": [(500, 800), (500,)], "ip2": [(10, 500), (10,)]}
    assert net._layer_names == ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1",
                                "ip2", "prob"]
    assert [l.type for l in net.layers][:3] == ["Input", "Convolution", "Pooling"]
    assert net.layer_dict["ip1"].blobs[0].shape == (500, 800)
    assert net.top_names["relu1"] == ["ip1"] and net.bottom_names["ip2"] == ["ip1"]
    blob = net.blobs["conv1"]
    assert (blob.num, blob.channels, blob.height, blob.width, blob.count) == (64, 20, 24, 24, 64 * 20 * 24 * 24)


def test_feature_extraction_and_forward_from_a_layer(lenet):
    net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    out = net.forward(data=images())
    ip1, ip2, prob = head(net, net.blobs["pool2"].data)
    np.testing.assert_allclose(net.blobs["ip1"].data, ip1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["prob"], prob, rtol=1e-4, atol=1e-5)
    # pycaffe's forward(start=...): a blob written by hand, the pass resumed from there
    pool2 = np.random.default_rng(1).random(net.blobs["pool2"].shape, dtype=np.float32)
    conv1 = net.blobs["conv1"].data.copy()
    net.blobs["pool2"].data[...] = pool2
    out = net.forward(start="ip1", blobs=["ip1"])
    np.testing.assert_allclose(out["prob"], head(net, pool2)[2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["ip1"], head(net, pool2)[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(net.blobs["conv1"].data, conv1)   # not rerun
    # and end=: conv1 recomputed from new data, nothing after it
    net.forward(end="conv1", data=images(seed=2))
    assert not np.array_equal(net.blobs["conv1"].data, conv1)
    np.testing.assert_array_equal(net.blobs["pool2"].data, pool2)


def test_backward_from_and_to_a_layer_against_numpy(lenet, tmp_path):
    text = lenet[0].read_text().replace('name: "LeNet"', 'name: "LeNet"\nforce_backward: true')
    model = tmp_path / "lenet.prototxt"
    model.write_text(text)
    net = caffe.Net(str(model), str(lenet[1]), caffe.TEST)
    net.blobs["data"].reshape(8, 1, 28, 28)   # re-planned at the next forward
    net.forward(data=images(8))
    prob = net.blobs["prob"].data.copy()
    top = np.random.default_rng(3).normal(size=prob.shape).astype(np.float32)
    grads = net.backward(prob=top, diffs=["ip2"])
    want_ip2 = prob * (top - (top * prob).sum(axis=1, keepdims=True))   # the softmax's Jacobian
    np.testing.assert_allclose(grads["ip2"], want_ip2, rtol=1e-4, atol=1e-6)
    ip1 = net.blobs["ip1"].data
    np.testing.assert_allclose(net.params["ip2"][0].diff, want_ip2.T @ ip1, rtol=1e-3, atol=1e-5)
    assert grads["data"].shape == (8, 1, 28, 28) and np.abs(grads["data"]).sum() > 0
    # start/end: only ip2 and prob run backward
    net.blobs["ip1"].diff[...] = 0
    net.blobs["pool2"].diff[...] = 7
    net.backward(start="prob", end="ip2", prob=top)
    w2 = net.params["ip2"][0].data
    np.testing.assert_allclose(net.blobs["ip1"].diff, want_ip2 @ w2, rtol=1e-4, atol=1e-5)
    assert np.all(net.blobs["pool2"].diff == 7)   # ip1 and below did not run


def test_net_surgery_save_and_reload(lenet, tmp_path):
    """pycaffe's net surgery: load Caffe's weights, edit them, save a caffemodel, reload."""
    net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    original = net.params["conv1"][0].data.copy()
    net.params["conv1"][0].data[...] *= 2
    net.params["ip2"][1].data[...] = np.arange(10)
    saved = tmp_path / "surgery.caffemodel"
    net.save(str(saved))
    model = read_caffemodel(saved)
    assert [(l.name, l.type, len(l.blobs)) for l in model.layers if l.blobs] == [
        ("conv1", "Convolution", 2), ("conv2", "Convolution", 2), ("ip1", "InnerProduct", 2),
        ("ip2", "InnerProduct", 2)]
    again = caffe.Net(str(lenet[0]), caffe.TEST, weights=str(saved))
    np.testing.assert_array_equal(again.params["conv1"][0].data, original * 2)
    np.testing.assert_array_equal(again.params["ip2"][1].data, np.arange(10))
    x = images(4, seed=5)
    net.blobs["data"].reshape(4, 1, 28, 28)
    np.testing.assert_array_equal(net.forward(data=x)["prob"], again.forward_all(data=x)["prob"])
    h5 = tmp_path / "surgery.caffemodel.h5"
    net.save_hdf5(str(h5))
    third = caffe.Net(str(lenet[0]), caffe.TEST)
    third.load_hdf5(str(h5))
    np.testing.assert_array_equal(third.params["ip2"][1].data, np.arange(10))


def test_reshape_keeps_parameters_and_old_arrays(lenet):
    net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    weights = net.params["ip1"][0].data
    held = net.forward(data=images(64))["prob"]
    kept = held.copy()
    net.blobs["data"].reshape(3, 1, 28, 28)
    net.reshape()
    assert net.blobs["prob"].shape == (3, 10) and net.blobs["conv1"].shape == (3, 20, 24, 24)
    np.testing.assert_array_equal(net.params["ip1"][0].data, weights)
    out = net.forward(data=images(64)[:3])["prob"]
    np.testing.assert_allclose(out, kept[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(held, kept)   # an array held from before is still valid
    with pytest.raises(ValueError, match="only a net's input blobs"):
        net.blobs["conv1"].reshape(1, 2)


def test_forward_all_pads_and_trims(lenet):
    net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    x = images(70, seed=4)
    out = net.forward_all(data=x, blobs=["ip1"])
    assert out["prob"].shape == (70, 10) and out["ip1"].shape == (70, 500)
    np.testing.assert_allclose(out["prob"][64:], net.forward(data=np.concatenate(
        [x[64:], np.zeros((58, 1, 28, 28), np.float32)]))["prob"][:6], rtol=1e-6)


def test_keep_compiles_the_packed_plan_with_named_blobs_readable(lenet):
    open_net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    packed = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST, keep=["conv1", "ip1"])
    assert packed._net.plan.arena_bytes < open_net._net.plan.arena_bytes
    x = images(64, seed=6)
    np.testing.assert_array_equal(packed.forward(data=x)["prob"], open_net.forward(data=x)["prob"])
    for name in ("conv1", "ip1"):
        np.testing.assert_array_equal(packed.blobs[name].data, open_net.blobs[name].data)


def test_errors_name_what_is_wrong(lenet):
    net = caffe.Net(str(lenet[0]), caffe.TEST)
    with pytest.raises(KeyError, match="'label' is not an input of the net"):
        net.forward(label=np.zeros(64))
    with pytest.raises(ValueError, match="Input is not batch sized"):
        net.forward(data=images(3))
    with pytest.raises(KeyError, match="no layer 'conv9'"):
        net.forward(start="conv9")
    with pytest.raises(Exception, match="without a backward"):
        net.backward()
    with pytest.raises(TypeError, match="needs a phase"):
        caffe.Net(str(lenet[0]))
    with pytest.raises(ValueError, match="phase must be"):
        caffe.Net(str(lenet[0]), 7)


def test_copy_from_warns_about_blobs_the_file_lacks(lenet, tmp_path):
    net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    partial = tmp_path / "partial.safetensors"
    net.save(str(partial))
    text = lenet[0].read_text().replace('name: "ip2"', 'name: "ip2_new"', 1)
    renamed = tmp_path / "renamed.prototxt"
    renamed.write_text(text)
    fresh = caffe.Net(str(renamed), caffe.TEST)
    with pytest.warns(UserWarning, match="2 parameter blobs of the net are not in the file.*ip2_new.0"):
        fresh.copy_from(str(partial))
    np.testing.assert_array_equal(fresh.params["conv1"][0].data, net.params["conv1"][0].data)


def test_seeded_nets_start_alike(lenet):
    caffe.set_random_seed(5)
    a = caffe.Net(str(lenet[0]), caffe.TEST)
    caffe.set_random_seed(5)
    b = caffe.Net(str(lenet[0]), caffe.TEST)
    np.testing.assert_array_equal(a.params["conv1"][0].data, b.params["conv1"][0].data)
    assert "Convolution" in caffe.layer_type_list()


def test_the_top_level_names_are_the_same_objects_and_load_lazily():
    import subprocess
    import sys

    import trainnet
    assert trainnet.Net is caffe.Net and trainnet.Solver is caffe.Solver
    code = ("import sys, trainnet; assert 'trainnet.layers' not in sys.modules; "
            "trainnet.Net; assert 'trainnet.layers' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="has no attribute 'Nett'"):
        trainnet.Nett


def test_classifier_center_crop_and_ten_crops_against_manual(lenet):
    rng = np.random.default_rng(8)
    pictures = [rng.random((30, 34, 1), dtype=np.float32) for _ in range(3)]
    clf = caffe.Classifier(str(lenet[0]), str(lenet[1]), image_dims=(32, 32), raw_scale=1.0,
                           input_scale=2.0)
    net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    resized = np.stack([caffe.io.resize_image(p, (32, 32)) for p in pictures])
    centre = resized[:, 2:30, 2:30, :].transpose(0, 3, 1, 2) * 2.0
    want = net.forward_all(data=centre)["prob"]
    np.testing.assert_allclose(clf.predict(pictures, oversample=False), want, rtol=1e-5, atol=1e-7)
    crops = caffe.io.oversample(resized, (28, 28)).transpose(0, 3, 1, 2) * 2.0
    ten = net.forward_all(data=crops)["prob"].reshape(3, 10, 10).mean(1)
    got = clf.predict(pictures)
    np.testing.assert_allclose(got, ten, rtol=1e-5, atol=1e-7)
    assert got.shape == (3, 10) and not np.allclose(got, want)


def test_pycaffe_names_are_where_scripts_look():
    from trainnet.caffe.proto import caffe_pb2
    assert caffe.proto.caffe_pb2 is caffe_pb2
    assert caffe.layers.Convolution and caffe.params.Pooling.MAX == caffe_pb2.PoolingParameter.MAX
    n = caffe.NetSpec()
    n.data = caffe.layers.Input(shape=dict(dim=[1, 1, 4, 4]))
    n.ip = caffe.layers.InnerProduct(n.data, num_output=2)
    assert 'type: "InnerProduct"' in str(caffe.to_proto(n.ip)) and "name" in str(n.to_proto())


def test_check_gradient_is_public():
    import trainnet
    from trainnet.runtime.gradcheck import check_gradient
    assert trainnet.check_gradient is check_gradient


def test_on_a_gpu_blobs_are_the_device_arrays(lenet, gpu_device, monkeypatch):
    """On the GPU (emulated in CI) data and diff are the device arrays the net computes in, not
    copies; numpy() copies; results match the CPU's."""
    cpu = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    monkeypatch.setattr(caffe.mode, "device", lambda: gpu_device)
    gpu = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    x = images(64, seed=9)
    want = cpu.forward(data=x)["prob"]
    got = gpu.forward(data=x)["prob"]
    np.testing.assert_allclose(gpu_device.to_host(got), want, rtol=1e-4, atol=1e-6)
    conv1 = gpu.blobs["conv1"].data
    assert type(conv1) is type(gpu._net.arena)
    if isinstance(conv1, np.ndarray):   # the emulated device's memory is host memory
        assert np.shares_memory(conv1, gpu._net.arena)
    else:
        assert conv1.data.ptr >= gpu._net.arena.data.ptr
    host = gpu.blobs["conv1"].numpy()
    assert isinstance(host, np.ndarray)
    np.testing.assert_allclose(host, cpu.blobs["conv1"].data, rtol=1e-4, atol=1e-5)
    host[...] = 0   # a copy: the net's blob is untouched
    assert float(np.abs(gpu_device.to_host(gpu.blobs["conv1"].data)).sum()) > 0


def test_arrays_outlive_their_net(lenet):
    import gc
    net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    prob = net.forward(data=images(64, seed=10))["prob"]
    kept = prob.copy()
    del net
    gc.collect()
    np.testing.assert_array_equal(prob, kept)


def _force_backward(lenet, tmp_path):
    text = lenet[0].read_text().replace('name: "LeNet"', 'name: "LeNet"\nforce_backward: true')
    model = tmp_path / "lenet_fb.prototxt"
    model.write_text(text)
    return str(model)


def test_pycaffe_gradient_bookkeeping(lenet, tmp_path):
    """A gradient set by hand on an output is used (saliency); parameter gradients are summed
    into until clear_param_diffs; forward(end=)/backward(end=) return that layer's blobs."""
    net = caffe.Net(_force_backward(lenet, tmp_path), str(lenet[1]), caffe.TEST)
    x = images(64, seed=11)
    out = net.forward(data=x, end="conv1")
    assert list(out) == ["conv1"]
    net.forward(data=x)
    net.blobs["prob"].diff[...] = 0
    net.blobs["prob"].diff[:, 3] = 1                      # d(prob of class 3)/d(data)
    saliency = net.backward()["data"].copy()
    assert np.abs(saliency).sum() > 0
    given = net.backward(prob=net.blobs["prob"].diff.copy())["data"]
    np.testing.assert_array_equal(saliency, given)
    twice = net.params["ip2"][0].diff.copy()             # two backward passes summed
    net.clear_param_diffs()
    net.backward(prob=np.eye(10, dtype=np.float32)[np.full(64, 3)])
    once = net.params["ip2"][0].diff.copy()
    np.testing.assert_allclose(twice, 2 * once, rtol=1e-5)
    net.backward(prob=np.eye(10, dtype=np.float32)[np.full(64, 3)])
    np.testing.assert_allclose(net.params["ip2"][0].diff, 2 * once, rtol=1e-5)
    grads = net.backward(end="ip2", start="prob", diffs=["prob"])
    assert list(grads) == ["ip1", "prob"]
    both = net.forward_backward_all(data=np.concatenate([x, x[:3]]), blobs=["ip1"],
                                    prob=np.ones((67, 10), np.float32))
    outs, diffs = both
    assert outs["prob"].shape == (67, 10) and outs["ip1"].shape == (67, 500)
    assert diffs["data"].shape == (67, 1, 28, 28)
    np.testing.assert_allclose(diffs["data"][64:], diffs["data"][:3], rtol=1e-5, atol=1e-8)


def test_share_with_and_held_param_blobs(lenet):
    a = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST)
    b = caffe.Net(str(lenet[0]), caffe.TEST)
    held = b.params["conv1"][0]
    b.share_with(a)
    assert held is b.params["conv1"][0]
    np.testing.assert_array_equal(held.data, a.params["conv1"][0].data)
    a.params["conv1"][0].data[...] = 3
    assert np.all(held.data == 3)


def test_keep_shows_only_what_it_keeps(lenet):
    net = caffe.Net(str(lenet[0]), str(lenet[1]), caffe.TEST, keep=["pool1"])
    assert list(net.blobs) == ["data", "pool1", "prob"]
