"""Embed: rows of W looked up by index; the weight gradient adds rows back by index."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity
from layer_check import build, check_gradients, run_forward
from trainnet.errors import TrainnetError
from trainnet.runtime.device import CPU


def embed_loops(x, w, b):
    out = np.zeros(x.shape + (w.shape[1],))
    for idx in np.ndindex(*x.shape):
        for c in range(w.shape[1]):
            out[idx + (c,)] = w[int(x[idx]), c] + (b[c] if b is not None else 0.0)
    return out


@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_loops(bias):
    x = np.array([[0, 3, 3], [1, 4, 0.9]])  # 0.9 truncates to 0, as Caffe's static_cast<int>
    layer = build("Embed", {"num_output": 2, "input_dim": 5, "bias_term": bias}, [x.shape])
    assert layer.top_shapes == [(2, 3, 2)]
    assert [b.shape for b in layer.param_blobs()] == [(5, 2)] + ([(2,)] if bias else [])
    io = run_forward(layer, [x])
    want = embed_loops(np.trunc(x), io.params[0], io.params[1] if bias else None)
    np.testing.assert_array_equal(io.top[0], want)


def test_weight_gradient_adds_repeated_indices():
    layer = build("Embed", {"num_output": 2, "input_dim": 3, "bias_term": False}, [(4,)])
    io = run_forward(layer, [np.array([2.0, 0.0, 2.0, 2.0])])
    io.top_diff[0][...] = [[1, 2], [3, 4], [5, 6], [7, 8]]
    io.param_diff[0][...] = 99  # backward overwrites
    layer.backward(io, CPU)
    np.testing.assert_array_equal(io.param_diff[0], [[3, 4], [0, 0], [13, 16]])
    assert io.bottom_diff[0] is not None and not io.bottom_diff[0].any()  # never written


@pytest.mark.parametrize("bias", [True, False])
def test_gradients(bias):
    x = np.random.default_rng(0).integers(0, 4, size=(2, 3)).astype(np.float64)
    layer = build("Embed", {"num_output": 3, "input_dim": 4, "bias_term": bias,
                            "weight_filler": {"type": "gaussian"}}, [x.shape])
    check_gradients(layer, [x], check_bottoms=[False])
    assert layer.no_grad_bottoms == (0,)


def test_an_index_out_of_range_is_a_clear_error():
    layer = build("Embed", {"num_output": 2, "input_dim": 5}, [(3,)], name="words")
    for bad in (5.0, -1.0, np.nan):
        with pytest.raises(TrainnetError, match=r"layer 'words' \(Embed\): index .* is outside "
                                                r"\[0, 5\) \(input_dim 5\)"):
            run_forward(layer, [np.array([0.0, bad, 1.0])])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,input_dim,num_output", [((2, 3), 4, 3), ((700,), 5, 9),
                                                        ((3, 50), 300, 2)])
def test_gpu_parity_is_exact(bias, shape, input_dim, num_output, gpu_device):
    x = np.random.default_rng(1).integers(0, input_dim, size=shape).astype(np.float32)
    layer = build("Embed", {"num_output": num_output, "input_dim": input_dim, "bias_term": bias},
                  [shape])
    cpu, gpu = check_parity(layer, [x], gpu_device, rtol=1e-6, propagate_down=[False])
    for want, got in zip(cpu.top + cpu.param_diff[:1], gpu.top + gpu.param_diff[:1]):
        np.testing.assert_array_equal(gpu_device.to_host(got), want)


def test_gpu_clamps_an_index_out_of_range(gpu_device):
    """The GPU cannot report a bad index without a sync: it reads the nearest row instead."""
    layer = build("Embed", {"num_output": 2, "input_dim": 3, "bias_term": False}, [(2,)])
    good, bad = np.array([0.0, 2.0], np.float32), np.array([-7.0, 30.0], np.float32)
    cpu, gpu = check_parity(layer, [good], gpu_device, backward=False, propagate_down=[False])
    gpu_device.upload(gpu.bottom[0], bad)
    layer.forward(gpu, gpu_device)
    np.testing.assert_array_equal(gpu_device.to_host(gpu.top[0]), cpu.top[0])


def test_errors():
    with pytest.raises(ValidationError, match="input_dim"):
        build("Embed", {"num_output": 2}, [(3,)])
    with pytest.raises(ValidationError, match="num_output"):
        build("Embed", {"num_output": 0, "input_dim": 3}, [(3,)])
