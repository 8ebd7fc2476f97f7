"""Scale and Bias against explicit loops: learned and bottom operands over every axis layout,
gradients, a Scale configured in place, CPU/GPU parity and user errors."""

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity, gpu_io, relative_error
from layer_check import build, check_gradients, make_io
from trainnet.errors import ConfigError
from trainnet.layers.base import StepContext, layer_class
from trainnet.netcfg import load_net_text
from trainnet.netcfg.net import LayerConfig
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net

X = (2, 3, 4, 5)
# (params, operand shape): the operand covers x's dims from the (canonical) axis on
LAYOUTS = [
    ({}, (3,)),
    ({"axis": 0, "num_axes": 2}, (2, 3)),
    ({"axis": -1}, (5,)),
    ({"axis": 2, "num_axes": -1}, (4, 5)),
    ({"num_axes": 0}, ()),
    ({"axis": 1, "num_axes": 3}, (3, 4, 5)),
]


def reference(x, operand, axis, op):
    """x (op) operand, the operand broadcast from ``axis``: a loop over every element of x."""
    axis = 0 if operand.ndim == 0 else axis % x.ndim
    out = np.empty_like(x)
    for idx in itertools.product(*map(range, x.shape)):
        out[idx] = op(x[idx], operand[idx[axis:axis + operand.ndim]])
    return out


def operand_of(layer, io):
    return io.params[0] if layer.learned else io.bottom[1]


@pytest.mark.parametrize("type_name,op", [("Scale", lambda a, s: a * s), ("Bias", lambda a, b: a + b)])
@pytest.mark.parametrize("params,shape", LAYOUTS)
@pytest.mark.parametrize("two_bottoms", [False, True])
def test_forward_matches_loop(type_name, op, params, shape, two_bottoms):
    rng = np.random.default_rng(0)
    x = rng.normal(size=X)
    bottoms = [x] + ([rng.normal(size=shape)] if two_bottoms else [])
    layer = build(type_name, params, [b.shape for b in bottoms])
    assert [b.shape for b in layer.param_blobs()] == ([] if two_bottoms else [shape])
    io = make_io(layer, bottoms)
    layer.forward(io, CPU)
    np.testing.assert_allclose(io.top[0], reference(x, operand_of(layer, io), params.get("axis", 1), op),
                               rtol=1e-12)


@pytest.mark.parametrize("two_bottoms", [False, True])
def test_scale_bias_term(two_bottoms):
    rng = np.random.default_rng(1)
    x, s = rng.normal(size=(2, 3, 4)), rng.normal(size=(3, 4))
    bottoms = [x] + ([s] if two_bottoms else [])
    layer = build("Scale", {"num_axes": 2, "bias_term": True}, [b.shape for b in bottoms])
    assert [b.shape for b in layer.param_blobs()] == [(3, 4)] * (1 if two_bottoms else 2)
    io = make_io(layer, bottoms)
    layer.forward(io, CPU)
    np.testing.assert_allclose(io.top[0], x * operand_of(layer, io) + io.params[-1], rtol=1e-12)


def test_fillers_default_to_identity():
    scale = build("Scale", {"bias_term": True}, [(2, 3)])
    assert [(b.filler.type, b.filler.value) for b in scale.param_blobs()] == \
        [("constant", 1.0), ("constant", 0.0)]
    assert build("Bias", {}, [(2, 3)]).param_blobs()[0].filler.value == 0.0
    # a filler given without a value is Caffe's constant 0, not the default 1
    assert build("Scale", {"filler": {"type": "constant"}}, [(2, 3)]).param_blobs()[0].filler.value == 0.0


@pytest.mark.parametrize("type_name,extra", [("Scale", {}), ("Scale", {"bias_term": True}), ("Bias", {})])
@pytest.mark.parametrize("params,shape", [LAYOUTS[0], LAYOUTS[1], LAYOUTS[4]])
@pytest.mark.parametrize("two_bottoms", [False, True])
def test_gradients(type_name, extra, params, shape, two_bottoms):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 2, 3))
    xshape = {(3,): (3,), (2, 3): (2, 3), (): ()}[shape]
    bottoms = [x] + ([rng.normal(size=xshape)] if two_bottoms else [])
    check_gradients(build(type_name, {**params, **extra}, [b.shape for b in bottoms]), bottoms)


def in_place_scale(params, shape):
    """A Scale configured as ``bottom: x, top: x`` (the compiler passes its LayerConfig)."""
    cls = layer_class("Scale")
    cfg = LayerConfig(name="scale", type="Scale", bottom=["x"], top=["x"], params=cls.Params(**params))
    return cls("scale", cfg.params, "TRAIN", [shape], common=cfg)


@pytest.mark.parametrize("bias_term", [False, True])
def test_in_place_keeps_a_copy_of_x(bias_term):
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2))
    plain = build("Scale", {"bias_term": bias_term}, [x.shape])
    layer = in_place_scale({"bias_term": bias_term}, x.shape)
    in_place_ctx = StepContext(in_place=True)
    assert "bottom" in layer.buffers(in_place_ctx) and not plain.buffers()
    runs = []
    for lay, in_place in ((plain, False), (layer, True)):
        io = make_io(lay, [x.copy()], seed=4, ctx=StepContext(in_place=in_place))
        if in_place:
            io.top, io.top_diff = io.bottom, io.bottom_diff
        lay.forward(io, CPU)
        io.top_diff[0][...] = dy
        lay.backward(io, CPU)
        runs.append((io.top[0].copy(), io.bottom_diff[0].copy(), [d.copy() for d in io.param_diff]))
    for want, got in zip(runs[0], runs[1]):
        for w, g in zip(want if isinstance(want, list) else [want], got if isinstance(got, list) else [got]):
            np.testing.assert_array_equal(g, w)
    assert not layer.buffers(StepContext(forward_only=True, in_place=True))


IN_PLACE_NET = """
layer:
  - {{name: in, type: Input, top: [data, label], shape: [{{dim: [4, 3, 2, 2]}}, {{dim: [4]}}]}}
  - {{name: ip0, type: InnerProduct, bottom: data, top: x, num_output: 12, axis: 1,
     weight_filler: {{type: gaussian, std: 0.5}}}}
  - {{name: scale, type: Scale, bottom: x, top: {top}, axis: 1, bias_term: true,
     filler: {{type: gaussian, std: 1}}}}
  - {{name: ip, type: InnerProduct, bottom: {top}, top: ip, num_output: 3, weight_filler: {{type: xavier}}}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}}
"""


def test_configured_in_place_scale_in_a_net_matches_out_of_place():
    grads = []
    for top in ("x", "y"):
        plan = compile_net(load_net_text(IN_PLACE_NET.format(top=top), "n.yaml"), "TRAIN")
        net = Net(plan, rng=np.random.default_rng(0))
        rng = np.random.default_rng(1)
        net.data("data")[...] = rng.normal(size=(4, 3, 2, 2))
        net.data("label")[...] = rng.integers(0, 3, 4)
        net.forward_backward()
        grads.append(net.params.named(net.params.diff))
    for key, want in grads[1].items():
        np.testing.assert_array_equal(grads[0][key], want, err_msg=key)


@pytest.mark.parametrize("type_name,extra", [("Scale", {}), ("Scale", {"bias_term": True}), ("Bias", {})])
@pytest.mark.parametrize("params,shape", LAYOUTS)
@pytest.mark.parametrize("two_bottoms", [False, True])
def test_gpu_parity(gpu_device, type_name, extra, params, shape, two_bottoms):
    rng = np.random.default_rng(5)
    bottoms = [rng.normal(size=X)] + ([rng.normal(size=shape)] if two_bottoms else [])
    layer = build(type_name, {**params, **extra}, [b.shape for b in bottoms])
    check_parity(layer, bottoms, gpu_device)


@pytest.mark.parametrize("type_name", ["Scale", "Bias"])
@pytest.mark.parametrize("propagate_down", [[True, False], [False, True]])
def test_gpu_parity_with_one_gradient(gpu_device, type_name, propagate_down):
    rng = np.random.default_rng(6)
    bottoms = [rng.normal(size=(3, 4, 5)), rng.normal(size=(4,))]
    check_parity(build(type_name, {}, [b.shape for b in bottoms]), bottoms, gpu_device,
                 propagate_down=propagate_down)


def test_gpu_parity_in_place(gpu_device):
    """The GPU pass copies x before overwriting it, as the CPU pass does."""
    rng = np.random.default_rng(7)
    layer = in_place_scale({"bias_term": True}, (2, 3, 4))
    x, dy = (rng.normal(size=(2, 3, 4)).astype(np.float32) for _ in range(2))
    cpu = make_io(layer, [x], ctx=StepContext(in_place=True))
    cpu.params = [p.astype(np.float32) for p in cpu.params]
    cpu.param_diff = [np.zeros_like(p) for p in cpu.params]
    gpu = gpu_io(layer, gpu_device, cpu, 0)
    for io, device in ((cpu, CPU), (gpu, gpu_device)):
        io.top, io.top_diff = io.bottom, io.bottom_diff  # one blob, as the plan binds it
        layer.forward(io, device)
        device.upload(io.top_diff[0], dy)
        layer.backward(io, device)
    for want, got in zip([cpu.top[0], cpu.bottom_diff[0], *cpu.param_diff],
                         [gpu.top[0], gpu.bottom_diff[0], *gpu.param_diff]):
        assert relative_error(gpu_device.to_host(got), want) <= 1e-5


@pytest.mark.parametrize("type_name", ["Scale", "Bias"])
@pytest.mark.parametrize("params,shapes,message", [
    ({"axis": 4}, [(2, 3, 4, 5)], r"axis 4 is out of range for a 4-D bottom \(2, 3, 4, 5\)"),
    ({"axis": -5}, [(2, 3, 4, 5)], "axis -5 is out of range"),
    ({"axis": 2, "num_axes": 3}, [(2, 3, 4, 5)], "num_axes 3 from axis 2 reaches past the 4-D bottom"),
    ({}, [(2, 3, 4), (4,)], r"operand of shape \(4,\) does not match bottom \(2, 3, 4\) from axis 1"),
    ({"axis": 1}, [(2, 3, 4), (3, 4, 1)], "does not match"),
])
def test_bad_shapes_are_clear_errors(type_name, params, shapes, message):
    with pytest.raises(ConfigError, match=message):
        build(type_name, params, shapes)


@pytest.mark.parametrize("type_name", ["Scale", "Bias"])
@pytest.mark.parametrize("params", [{"num_axes": -2}, {"axis": 1.5}, {"filler": {"type": "nope"}}])
def test_bad_parameters_are_refused(type_name, params):
    with pytest.raises(ValidationError):
        build(type_name, params, [(2, 3)])


def test_scale_takes_one_or_two_bottoms_in_a_net():
    text = """
layer:
  - {name: in, type: Input, top: [a, b, c], shape: [{dim: [2, 3]}, {dim: [3]}, {dim: [3]}]}
  - {name: s, type: Scale, bottom: [a, b, c], top: y}
"""
    with pytest.raises(ConfigError, match="expects 1 to 2 bottoms, got 3"):
        compile_net(load_net_text(text, "n.yaml"), "TEST")
