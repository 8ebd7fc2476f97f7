"""InfogainLoss (current Caffe: a softmax inside) against a loop reference: H from bottom 2 or
from a binaryproto ``source``, normalization modes, ignore_label, gradients, CPU/GPU parity."""

import math

import numpy as np
import pytest

from gpu_check import check_parity, gpu_io
from layer_check import build, check_gradients, make_io, run_forward
from test_split import with_tops
from trainnet.errors import ConfigError, TrainnetError
from trainnet.runtime.device import CPU


def naive_loss(x, label, H, ignore=None, mode="VALID", axis=1):
    """-sum_k H[label, k] log(max(softmax(x)_k, 1e-20)) / norm, item by item."""
    x = np.moveaxis(x, axis, -1)
    k = x.shape[-1]
    rows, labels = x.reshape(-1, k), label.reshape(-1)
    total, count = 0.0, 0
    for r, lab in zip(rows, labels):
        if ignore is not None and int(lab) == ignore:
            continue
        e = [math.exp(v - max(r)) for v in r]
        p = [v / sum(e) for v in e]
        total -= sum(H[int(lab), j] * math.log(max(p[j], 1e-20)) for j in range(k))
        count += 1
    outer = int(np.prod(x.shape[:axis]))
    norm = {"VALID": count, "FULL": rows.shape[0], "BATCH_SIZE": outer, "NONE": 1}[mode]
    return total / max(1, norm)


def data(shape, label_shape, k, seed=0, ignore=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 2
    label = rng.integers(0, k, size=label_shape).astype(np.float64)
    if ignore is not None:
        label.reshape(-1)[::3] = ignore
    return x, label, rng.uniform(0, 2, size=(k, k))


@pytest.mark.parametrize("mode", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", [None, 255])
def test_forward_modes_with_h_as_bottom(mode, ignore):
    x, label, H = data((3, 4, 2, 2), (3, 2, 2), 4, ignore=ignore)
    layer = build("InfogainLoss", {"normalization": mode, "ignore_label": ignore},
                  [x.shape, label.shape, H.shape])
    io = run_forward(layer, [x, label, H])
    assert io.top[0].shape == ()
    assert float(io.top[0]) == pytest.approx(naive_loss(x, label, H, ignore, mode), rel=1e-12)


def test_axis_and_probability_top():
    x, label, H = data((2, 3, 5), (2, 3), 5)
    layer = with_tops("InfogainLoss", {"axis": -1}, [x.shape, label.shape, (1, 1, 5, 5)], 2)
    io = run_forward(layer, [x, label, H.reshape(1, 1, 5, 5)])
    assert float(io.top[0]) == pytest.approx(naive_loss(x, label, H, axis=2), rel=1e-12)
    np.testing.assert_allclose(io.top[1], np.exp(x) / np.exp(x).sum(2, keepdims=True))


def test_identity_h_is_softmax_with_loss():
    x, label, _ = data((4, 3), (4,), 3)
    info = run_forward(build("InfogainLoss", {}, [x.shape, label.shape, (3, 3)]),
                       [x, label, np.eye(3)])
    soft = run_forward(build("SoftmaxWithLoss", {}, [x.shape, label.shape]), [x, label])
    assert float(info.top[0]) == pytest.approx(float(soft.top[0]), rel=1e-12)


@pytest.mark.parametrize("params", [{}, {"ignore_label": 1, "normalization": "FULL"}])
def test_gradients(params):
    x, label, H = data((2, 3, 2), (2, 2), 3, seed=3)
    layer = build("InfogainLoss", params, [x.shape, label.shape, H.shape])
    check_gradients(layer, [x, label, H], check_bottoms=[True, False, False])


def test_loss_weight_scales_gradient():
    x, label, H = data((3, 4), (3,), 4)
    layer = build("InfogainLoss", {}, [x.shape, label.shape, H.shape])
    io = make_io(layer, [x, label, H], propagate_down=[True, False, False])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 2.0
    layer.backward(io, CPU)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    rows = H[label.astype(int)]
    np.testing.assert_allclose(io.bottom_diff[0], (p * rows.sum(1, keepdims=True) - rows) * 2 / 3)
    assert io.bottom_diff[1] is None and io.bottom_diff[2] is None


@pytest.fixture
def h_file(tmp_path):
    from trainnet.formats import blobproto

    H = np.random.default_rng(5).uniform(0, 2, size=(4, 4)).astype(np.float32)
    blobproto.save_blob(tmp_path / "H.binaryproto", H.reshape(1, 1, 4, 4))
    return tmp_path / "H.binaryproto", H


def test_source_file(h_file):
    path, H = h_file
    x, label, _ = data((3, 4), (3,), 4)
    layer = build("InfogainLoss", {"source": str(path)}, [x.shape, label.shape])
    io = run_forward(layer, [x, label])
    assert float(io.top[0]) == pytest.approx(naive_loss(x, label, H), rel=1e-6)
    check_gradients(layer, [x, label], check_bottoms=[True, False])


def test_source_resolves_beside_the_net_file(h_file, tmp_path):
    from trainnet.netcfg import load_net_text
    from trainnet.plan import compile_net
    text = """
layer:
  - {name: in, type: Input, top: [x, y], shape: [{dim: [3, 4]}, {dim: [3]}]}
  - {name: loss, type: InfogainLoss, bottom: [x, y], top: loss, source: H.binaryproto}
"""
    plan = compile_net(load_net_text(text, str(tmp_path / "net.yaml")), "TRAIN")
    np.testing.assert_array_equal(plan.step("loss").layer.H, h_file[1])


def test_source_net_on_the_gpu_path_matches_the_cpu(h_file, tmp_path, gpu_device):
    """H from ``source`` reaches the device once, when the Net is built (make_state)."""
    from trainnet.netcfg import load_net_text
    from trainnet.plan import compile_net
    from trainnet.runtime.net import Net
    from gpu_check import relative_error
    text = """
layer:
  - {name: in, type: Input, top: [x, y], shape: [{dim: [5, 3]}, {dim: [5]}]}
  - {name: ip, type: InnerProduct, bottom: x, top: ip, num_output: 4,
     weight_filler: {type: gaussian, std: 0.5}}
  - {name: loss, type: InfogainLoss, bottom: [ip, y], top: loss, source: H.binaryproto}
"""
    cfg = load_net_text(text, str(tmp_path / "net.yaml"))
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(5, 3)), rng.integers(0, 4, size=5)
    results = []
    for device in (CPU, gpu_device):
        net = Net(compile_net(cfg, "TRAIN", gpu=device.is_gpu), device, rng=np.random.default_rng(0))
        net.set_input("x", x)
        net.set_input("y", y)
        results.append((net.forward_backward(), device.to_host(net.params.diff)))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    assert relative_error(results[1][1], results[0][1]) < 1e-4


def test_source_errors(h_file, tmp_path):
    with pytest.raises(ConfigError, match=r"infogain_loss_param.source .* is required"):
        build("InfogainLoss", {}, [(3, 4), (3,)])
    with pytest.raises(ConfigError, match=r"layer 'info'.*source '.*nope.binaryproto' not found"):
        build("InfogainLoss", {"source": str(tmp_path / "nope.binaryproto")}, [(3, 4), (3,)],
              name="info")
    with pytest.raises(ConfigError, match=r"H must be 5 x 5 for 5 classes, got shape \(1, 1, 4, 4\)"):
        build("InfogainLoss", {"source": str(h_file[0])}, [(3, 5), (3,)])
    (tmp_path / "bad.binaryproto").write_bytes(b"\xff\xff\xff")
    with pytest.raises(ConfigError, match=r"infogain_loss_param.source: .*bad.binaryproto"):
        build("InfogainLoss", {"source": str(tmp_path / "bad.binaryproto")}, [(3, 4), (3,)])


def test_param_and_shape_errors():
    with pytest.raises(ConfigError, match=r"bottom 2 \(the infogain matrix H\) must be 3 x 3"):
        build("InfogainLoss", {}, [(2, 3), (2,), (3, 4)])
    with pytest.raises(ConfigError, match="H is given twice"):
        build("InfogainLoss", {"source": "H.binaryproto"}, [(2, 3), (2,), (3, 3)])
    with pytest.raises(ConfigError, match="normalize is deprecated .*use normalization"):
        build("InfogainLoss", {"normalize": True}, [(2, 3), (2,), (3, 3)])
    with pytest.raises(ConfigError, match=r"bottom 1 \(label\) expects shape"):
        build("InfogainLoss", {}, [(2, 3), (3,), (3, 3)])


def test_label_out_of_range_names_layer_and_value():
    layer = build("InfogainLoss", {"ignore_label": -1}, [(3, 4), (3,), (4, 4)], name="info")
    run_forward(layer, [np.zeros((3, 4)), np.array([0.0, -1.0, 3.0]), np.eye(4)])
    with pytest.raises(TrainnetError, match=r"layer 'info'.*label value 4 .*outside \[0, 4\)"):
        run_forward(layer, [np.zeros((3, 4)), np.array([0.0, 4.0, 1.0]), np.eye(4)])


@pytest.mark.parametrize("params", [{}, {"ignore_label": 2, "normalization": "BATCH_SIZE"},
                                    {"normalization": "NONE"}])
def test_gpu_parity_h_as_bottom(gpu_device, params):
    x, label, H = data((3, 4, 2, 3), (3, 2, 3), 4, seed=6, ignore=params.get("ignore_label"))
    layer = with_tops("InfogainLoss", params, [x.shape, label.shape, H.shape], 2)
    check_parity(layer, [x, label, H], gpu_device, propagate_down=[True, False, False])


def test_gpu_parity_h_from_source(gpu_device, h_file):
    x, label, _ = data((5, 4), (5,), 4, seed=7, ignore=3)
    layer = build("InfogainLoss", {"source": str(h_file[0]), "ignore_label": 3},
                  [x.shape, label.shape])
    check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])


@pytest.mark.parametrize("type_name", ["InfogainLoss", "SoftmaxWithLoss"])
def test_gpu_bad_label_makes_loss_and_gradient_nan(gpu_device, type_name):
    """The CPU pass refuses a counted label outside [0, K); the GPU pass, which cannot stop
    mid-graph, turns the loss and that row's gradient into NaN (both kernels share the rows)."""
    shapes = [(3, 4), (3,), (4, 4)][:3 if type_name == "InfogainLoss" else 2]
    layer = build(type_name, {"ignore_label": 2}, shapes)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    bottoms = [x, np.zeros(3, np.float32), np.eye(4, dtype=np.float32)][:len(shapes)]
    cpu = make_io(layer, bottoms, propagate_down=[True] + [False] * (len(shapes) - 1))
    cpu.top_diff[0][...] = 1.0
    io = gpu_io(layer, gpu_device, cpu, 0)
    gpu_device.upload(io.bottom[1], np.array([0.0, 5.0, 2.0], np.float32))
    layer.forward(io, gpu_device)
    layer.backward(io, gpu_device)
    assert np.isnan(gpu_device.to_host(io.top[0])).all()
    dx = gpu_device.to_host(io.bottom_diff[0])
    assert np.isnan(dx[1]).all() and not np.isnan(dx[0]).any() and (dx[2] == 0).all()
