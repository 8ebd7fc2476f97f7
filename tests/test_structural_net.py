"""A small net through the structural layers (DummyData, Crop, Concat, Slice, Tile, Reshape,
Embed, Reduction, ArgMax, Silence) trains on the CPU and on the GPU path alike."""

import numpy as np

from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net

NET = """\
name: structural
layer:
  - {name: noise, type: DummyData, top: noise, shape: {dim: [4, 3, 2, 2]},
     data_filler: {type: gaussian, std: 0.01}}
  - {name: input, type: Input, top: [data, words, label],
     shape: [{dim: [4, 2, 4, 4]}, {dim: [4, 3]}, {dim: [4]}]}
  - {name: conv, type: Convolution, bottom: data, top: conv, num_output: 3, kernel_size: 3,
     weight_filler: {type: xavier}}
  - {name: crop, type: Crop, bottom: [data, conv], top: cropped, offset: 1}
  - {name: join, type: Concat, bottom: [cropped, conv, noise], top: joined}
  - {name: cut, type: Slice, bottom: joined, top: [a, b, rest], slice_point: [2, 5]}
  - {name: tile, type: Tile, bottom: a, top: tiled, tiles: 2}
  - {name: flat, type: Reshape, bottom: b, top: flat, shape: {dim: [0, -1]}}
  - {name: ip_a, type: InnerProduct, bottom: tiled, top: ip_a, num_output: 3,
     weight_filler: {type: xavier}}
  - {name: ip_b, type: InnerProduct, bottom: flat, top: ip_b, num_output: 3,
     weight_filler: {type: xavier}}
  - {name: embed, type: Embed, bottom: words, top: embedded, num_output: 4, input_dim: 6,
     weight_filler: {type: uniform, min: -0.5, max: 0.5}}
  - {name: pool_words, type: Reduction, bottom: embedded, top: pooled, operation: MEAN, axis: 2}
  - {name: features, type: Concat, bottom: [ip_a, ip_b, pooled], top: features}
  - {name: logits, type: InnerProduct, bottom: features, top: logits, num_output: 3,
     weight_filler: {type: xavier}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [logits, label], top: loss}
  - {name: penalty, type: Reduction, bottom: ip_a, top: penalty, operation: SUMSQ,
     coeff: 0.001, loss_weight: 1}
  - {name: guess, type: ArgMax, bottom: logits, top: guess}
  - {name: quiet, type: Silence, bottom: [rest, guess]}
"""


def build(device, graph=False):
    plan = compile_net(load_net_text(NET, "structural.yaml"), "TRAIN", gpu=device.is_gpu)
    return Net(plan, device, rng=np.random.default_rng(0), graph=graph)


def feed(net):
    """The inputs, set before every pass (the plan reuses their memory once they are read)."""
    rng = np.random.default_rng(1)
    net.set_input("data", rng.normal(size=(4, 2, 4, 4)).astype(np.float32))
    net.set_input("words", rng.integers(0, 6, size=(4, 3)).astype(np.float32))
    net.set_input("label", np.array([0, 1, 2, 1], np.float32))


def sgd_step(net, lr):
    if net.device.is_gpu:
        net.device.backend.axpy(net.params.data, net.params.diff, -lr)
    else:
        net.params.data -= np.float32(lr) * net.params.diff


def train(device, steps, graph=False):
    net = build(device, graph)
    losses = []
    for _ in range(steps):
        feed(net)
        losses.append(net.forward_backward())
        sgd_step(net, 0.1)
    return net, losses


def test_the_net_compiles_and_trains_on_the_cpu():
    net, losses = train(CPU, 8)
    plan = net.plan
    assert plan.blob("joined").shape == (4, 8, 2, 2)
    assert [plan.blob(t).shape for t in ("a", "b", "rest")] == [(4, 2, 2, 2), (4, 3, 2, 2),
                                                                 (4, 3, 2, 2)]
    assert plan.blob("pooled").shape == (4, 3) and plan.blob("penalty").shape == ()
    assert plan.step("embed").propagate_down == [False]
    # data needs no gradient; conv only lends its shape
    assert plan.step("crop").propagate_down == [False, False]
    assert not plan.step("guess").need_backward and not plan.step("quiet").need_backward
    assert losses[-1] < 0.5 * losses[0]


def test_the_gpu_path_trains_like_the_cpu(gpu_device):
    cpu, cpu_losses = train(CPU, 4)
    gpu, gpu_losses = train(gpu_device, 4)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-4)
    np.testing.assert_allclose(gpu_device.to_host(gpu.params.data), cpu.params.data, rtol=1e-4,
                               atol=1e-6)


def test_a_graph_replays_the_device_work(gpu_device):
    eager = build(gpu_device)
    graph = build(gpu_device, graph=True)
    assert graph.use_graph and [s.name for s, _ in graph.host_steps] == ["noise"]
    for _ in range(3):
        feed(eager)
        feed(graph)
        assert graph.forward() == eager.forward()  # new noise each pass, from the host
