"""The loss layers in whole nets: compiled, run forward and backward on the CPU and the GPU
path with equal results; EuclideanLoss trains; a replayed CUDA graph reads the current loss
weight from device memory."""

import numpy as np
import pytest

from gpu_check import check_parity, gpu_io, relative_error
from layer_check import build
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net

N, D, K = 6, 5, 4

NETS = {
    "EuclideanLoss": """
  - {name: in, type: Input, top: [data, target], shape: [{dim: [6, 5]}, {dim: [6, 4]}]}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 4,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: loss, type: EuclideanLoss, bottom: [ip, target], top: loss}
""",
    "SigmoidCrossEntropyLoss": """
  - {name: in, type: Input, top: [data, target], shape: [{dim: [6, 5]}, {dim: [6, 4]}]}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 4,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: loss, type: SigmoidCrossEntropyLoss, bottom: [ip, target], top: loss,
     normalization: VALID, loss_weight: 2}
""",
    "HingeLoss": """
  - {name: in, type: Input, top: [data, label], shape: [{dim: [6, 5]}, {dim: [6]}]}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 4,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: loss, type: HingeLoss, bottom: [ip, label], top: loss, norm: L2}
""",
    "MultinomialLogisticLoss": """
  - {name: in, type: Input, top: [data, label], shape: [{dim: [6, 5]}, {dim: [6]}]}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 4,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: prob, type: Softmax, bottom: ip, top: prob}
  - {name: loss, type: MultinomialLogisticLoss, bottom: [prob, label], top: loss}
""",
    "InfogainLoss": """
  - {name: in, type: Input, top: [data, label, H], shape: [{dim: [6, 5]}, {dim: [6]}, {dim: [4, 4]}]}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 4,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: loss, type: InfogainLoss, bottom: [ip, label, H], top: [loss, prob], ignore_label: 3}
""",
    "ContrastiveLoss": """
  - {name: in, type: Input, top: [data, data_p, sim], shape: [{dim: [6, 5]}, {dim: [6, 5]}, {dim: [6]}]}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 4,
     param: {name: shared_w}, bias_term: false, weight_filler: {type: gaussian, std: 0.3}}
  - {name: ip_p, type: InnerProduct, bottom: data_p, top: ip_p, num_output: 4,
     param: {name: shared_w}, bias_term: false}
  - {name: loss, type: ContrastiveLoss, bottom: [ip, ip_p, sim], top: loss, margin: 2.0}
""",
}


def inputs(rng) -> dict[str, np.ndarray]:
    labels = rng.integers(0, K, size=N).astype(np.float32)
    return {"data": rng.normal(size=(N, D)), "data_p": rng.normal(size=(N, D)),
            "target": rng.uniform(size=(N, K)), "label": labels, "sim": labels % 2,
            "H": rng.uniform(0, 2, size=(K, K))}


def make_net(loss_type: str, device, seed: int = 0) -> Net:
    cfg = load_net_text(f"name: {loss_type}\nlayer:{NETS[loss_type]}", "net.yaml")
    plan = compile_net(cfg, "TRAIN", gpu=device.is_gpu)
    net = Net(plan, device, rng=np.random.default_rng(seed))
    for name, value in inputs(np.random.default_rng(seed + 1)).items():
        if name in plan.blobs and plan.steps[0].tops.count(name):
            net.set_input(name, value.astype(np.float32))
    return net


@pytest.mark.parametrize("loss_type", sorted(NETS))
def test_net_runs_on_the_cpu(loss_type):
    net = make_net(loss_type, CPU)
    loss = net.forward_backward()
    assert np.isfinite(loss) and loss > 0
    assert np.abs(net.params.diff).sum() > 0, "no gradient reached the InnerProduct"


@pytest.mark.parametrize("loss_type", sorted(NETS))
def test_net_on_the_gpu_path_matches_the_cpu(loss_type, gpu_device):
    cpu, gpu = make_net(loss_type, CPU), make_net(loss_type, gpu_device)
    cpu_loss, gpu_loss = cpu.forward_backward(), gpu.forward_backward()
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-5)
    assert relative_error(gpu_device.to_host(gpu.params.diff), cpu.params.diff) < 1e-4


def sgd_losses(device, steps: int = 25, lr: float = 0.1) -> list[float]:
    """A linear regression fitted by plain SGD through EuclideanLoss."""
    net = make_net("EuclideanLoss", device)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(N, D)).astype(np.float32)
    net.set_input("data", x)
    net.set_input("target", (x @ rng.normal(size=(D, K))).astype(np.float32))
    losses = []
    for _ in range(steps):
        losses.append(net.forward_backward())
        net.params.data -= np.float32(lr) * net.params.diff
    return losses


def test_euclidean_loss_trains():
    losses = sgd_losses(CPU)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.2 * losses[0]


def test_euclidean_loss_trains_alike_on_the_gpu_path(gpu_device):
    np.testing.assert_allclose(sgd_losses(gpu_device), sgd_losses(CPU), rtol=1e-4)


# one small instance of each loss: (type, params, bottoms, propagate_down)
rng = np.random.default_rng(0)
LAYERS = [
    ("EuclideanLoss", {}, [rng.normal(size=(4, 3)), rng.normal(size=(4, 3))], [True, True]),
    ("SigmoidCrossEntropyLoss", {"normalization": "VALID"},
     [rng.normal(size=(4, 3)), rng.uniform(size=(4, 3))], [True, False]),
    ("HingeLoss", {"norm": "L2"}, [rng.normal(size=(4, 3)), np.array([0.0, 2, 1, 1])],
     [True, False]),
    ("MultinomialLogisticLoss", {}, [rng.uniform(0.1, 1, size=(4, 3)), np.array([0.0, 2, 1, 1])],
     [True, False]),
    ("InfogainLoss", {}, [rng.normal(size=(4, 3)), np.array([0.0, 2, 1, 1]),
                          rng.uniform(size=(3, 3))], [True, False, False]),
    ("ContrastiveLoss", {"margin": 3.0}, [rng.normal(size=(4, 3)), rng.normal(size=(4, 3)),
                                          np.array([0.0, 1, 0, 1])], [True, True, False]),
]


@pytest.mark.parametrize("loss_type,params,bottoms,propagate", LAYERS, ids=[l[0] for l in LAYERS])
def test_graph_replay_reads_the_loss_weight_from_device_memory(loss_type, params, bottoms,
                                                               propagate, gpu_device):
    layer = build(loss_type, params, [b.shape for b in bottoms])
    cpu, _ = check_parity(layer, bottoms, gpu_device, propagate_down=propagate,
                          top_diffs=[np.float32(1.0)])
    gpu = gpu_io(layer, gpu_device, cpu, 0)
    layer.forward(gpu, gpu_device)
    graph = gpu_device.backend.capture(lambda: layer.backward(gpu, gpu_device))
    for weight in (1.0, 3.0):
        gpu_device.upload(gpu.top_diff[0], np.float32(weight))
        graph.replay()
        for want, got in zip(cpu.bottom_diff, gpu.bottom_diff):
            if want is not None:
                assert relative_error(gpu_device.to_host(got), weight * want) < 1e-5
