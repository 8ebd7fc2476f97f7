"""Silence: takes blobs, gives none; zeros their gradients when a backward runs (force_backward)."""

import numpy as np
import pytest

from gpu_check import check_parity
from layer_check import build, run_forward
from trainnet.errors import ConfigError
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net


def test_forward_does_nothing_and_backward_zeros():
    layer = build("Silence", {}, [(2, 3), (4,)])
    assert layer.top_shapes == []
    io = run_forward(layer, [np.ones((2, 3)), np.ones(4)])
    assert io.top == []
    io.bottom_diff[0][...] = 5
    io.bottom_diff[1] = None  # a bottom that takes no gradient
    layer.backward(io, CPU)
    assert not io.bottom_diff[0].any()


def test_gpu_parity(gpu_device):
    check_parity(build("Silence", {}, [(2, 3), (5,)]), [np.ones((2, 3)), np.ones(5)], gpu_device,
                 rtol=0)


NET = """\
name: silence
force_backward: {force}
layer:
  - {{name: input, type: Input, top: [data, label], shape: [{{dim: [4, 6]}}, {{dim: [4]}}]}}
  - {{name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 3,
     weight_filler: {{type: gaussian}}}}
  - {{name: quiet, type: Silence, bottom: [ip, label]}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}}
"""


def run(force: bool, device=CPU, silence: bool = True):
    text = NET.format(force=str(force).lower())
    if not silence:
        text = "\n".join(line for line in text.splitlines() if "Silence" not in line) + "\n"
    plan = compile_net(load_net_text(text, "silence.yaml"), "TRAIN", gpu=device.is_gpu)
    net = Net(plan, device, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    net.set_input("data", rng.normal(size=(4, 6)).astype(np.float32))
    net.set_input("label", np.array([0, 1, 2, 1], np.float32))
    loss = net.forward_backward()
    return plan, loss, device.to_host(net.params.diff)


@pytest.mark.parametrize("force", [False, True])
def test_in_a_net_silence_adds_nothing_to_the_gradients(force):
    plan, loss, grads = run(force)
    _, want_loss, want = run(force, silence=False)
    quiet = plan.step("quiet")
    assert quiet.tops == [] and quiet.need_backward == force  # no loss behind it, as in Caffe
    assert "ip" not in plan.outputs and "label" not in plan.outputs
    assert loss == want_loss
    np.testing.assert_array_equal(grads, want)


def test_in_a_gpu_net(gpu_device):
    _, loss, grads = run(True, gpu_device)
    _, want_loss, want = run(True)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grads, want, rtol=1e-4, atol=1e-6)


def test_silence_needs_a_bottom_and_takes_no_top():
    text = NET.format(force="false").replace("bottom: [ip, label]}",
                                             "bottom: [ip, label], top: x}", 1)
    with pytest.raises(ConfigError, match="expects 0 tops, got 1"):
        compile_net(load_net_text(text, "silence.yaml"), "TRAIN")
    text = NET.format(force="false").replace("bottom: [ip, label]}", "bottom: []}", 1)
    with pytest.raises(ConfigError, match="expects at least 1 bottoms?, got 0"):
        compile_net(load_net_text(text, "silence.yaml"), "TRAIN")
