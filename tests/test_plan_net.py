"""The Net that runs a Plan: gradients against central differences (CPU, float32), and the
device a plan was compiled for."""

import numpy as np
import pytest

from trainnet.netcfg import NetConfig
from trainnet.plan import compile_net
from trainnet.runtime.net import Net

from plan_cases import LOSS_ALSO_CONSUMED, SHARED, lenet_with_input, net


TINY = """\
name: tiny
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [5, 6]}, {dim: [5]}]}
  - name: ip1
    type: InnerProduct
    bottom: data
    top: ip1
    num_output: 7
    weight_filler: {type: gaussian, std: 0.5}
    bias_filler: {type: gaussian, std: 0.5}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - name: ip2
    type: InnerProduct
    bottom: ip1
    top: ip2
    num_output: 4
    weight_filler: {type: gaussian, std: 0.5}
    bias_filler: {type: gaussian, std: 0.5}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""

EPS = 1e-2


def make_net(cfg: NetConfig, seed: int = 0):
    plan = compile_net(cfg, "TRAIN")
    rng = np.random.default_rng(seed)
    nt = Net(plan, rng=np.random.default_rng(seed))
    shapes = {t: plan.blobs[t].shape for t in plan.steps[0].tops}
    x = rng.normal(size=shapes["data"]).astype(np.float32)
    y = rng.integers(0, 3, size=shapes["label"]).astype(np.float32)
    return nt, x, y


def run(nt: Net, x, y, backward: bool = False) -> float:
    """Write the inputs (the arena may reuse their bytes) and run a pass."""
    nt.data("data")[...] = x
    nt.data("label")[...] = y
    return nt.forward_backward() if backward else nt.forward()


def numeric_gradients(nt: Net, x, y) -> dict[str, np.ndarray]:
    """Central differences of the loss for every element of every parameter slot."""
    out = {}
    for key, value in nt.params.named().items():
        grad = np.zeros(value.shape, dtype=np.float64)
        for idx in np.ndindex(value.shape):
            old = float(value[idx])
            value[idx] = old + EPS
            up = run(nt, x, y)
            value[idx] = old - EPS
            down = run(nt, x, y)
            value[idx] = old
            grad[idx] = (up - down) / (2 * EPS)
        out[key] = grad
    return out


def analytic_gradients(nt: Net, x, y) -> dict[str, np.ndarray]:
    run(nt, x, y, backward=True)
    return {k: np.array(v, dtype=np.float64) for k, v in nt.params.named(nt.params.diff).items()}


def assert_gradients_match(analytic, numeric):
    assert analytic.keys() == numeric.keys()
    for key in analytic:
        scale = max(np.abs(numeric[key]).max(), 1e-2)
        np.testing.assert_allclose(analytic[key], numeric[key], rtol=2e-2, atol=2e-3 * scale,
                                   err_msg=key)


def assert_far_from_relu_kinks(nt: Net, x, layer: str):
    """No pre-activation of ``layer`` (fed by ``x``) is within one finite-difference step of 0,
    else the check would straddle ReLU's kink; holds for the fixed seeds used here."""
    w, b = (nt.params.named()[f"{layer}.{j}"] for j in (0, 1))
    z = x.reshape(len(x), -1) @ w.T + b
    step = EPS * max(np.abs(x).max(), 1.0)  # the most one perturbed weight or bias moves z
    assert np.abs(z).min() > step, "pick another seed: a pre-activation sits at the ReLU kink"


def test_net_gradients_match_finite_differences():
    nt, x, y = make_net(net(TINY), seed=3)
    assert_far_from_relu_kinks(nt, x, "ip1")
    loss = run(nt, x, y)
    assert 0.1 < loss < 10 and np.isfinite(loss)
    analytic = analytic_gradients(nt, x, y)
    assert set(analytic) == {"ip1.0", "ip1.1", "ip2.0", "ip2.1"}
    assert all(np.abs(g).max() > 1e-3 for g in analytic.values())
    assert_gradients_match(analytic, numeric_gradients(nt, x, y))
    # backward overwrites, never accumulates: a second pass gives the same gradients
    again = analytic_gradients(nt, x, y)
    for k in analytic:
        np.testing.assert_array_equal(again[k], analytic[k])


def test_loss_weight_carried_by_split_reaches_the_gradient():
    nt, x, y = make_net(net(LOSS_ALSO_CONSUMED), seed=1)
    loss = run(nt, x, y)
    w, b = (nt.params.named()[f"ip1.{j}"].astype(np.float64) for j in (0, 1))
    scores = x @ w.T + b
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    softmax_loss = -logp[np.arange(len(y)), y.astype(int)].mean()
    assert abs(0.25 * scores.sum()) > 0.1  # the weighted term is not negligible here
    assert loss == pytest.approx(0.25 * scores.sum() + softmax_loss, rel=1e-5)
    assert_gradients_match(analytic_gradients(nt, x, y), numeric_gradients(nt, x, y))


def test_shared_weight_gradient_is_the_sum_of_both_uses():
    shared, x, y = make_net(net(SHARED), seed=5)
    assert_far_from_relu_kinks(shared, x, "ipA")
    analytic = analytic_gradients(shared, x, y)
    assert set(analytic) == {"ipA.0", "ipA.1", "ipB.1", "ipC.0", "ipC.1"}
    assert_gradients_match(analytic, numeric_gradients(shared, x, y))

    # the same net without sharing, both layers given the shared weight: their sum
    separate, _, _ = make_net(net(SHARED.replace("[{name: shared}, {lr_mult: 2}]", "[{}, {lr_mult: 2}]")
                                  .replace("[{name: shared}]", "[{}]")), seed=5)
    for key, value in shared.params.named().items():
        separate.params.named()[key][...] = value
    separate.params.named()["ipB.0"][...] = shared.params.named()["ipA.0"]
    assert run(separate, x, y) == pytest.approx(run(shared, x, y), rel=1e-6)
    parts = analytic_gradients(separate, x, y)
    np.testing.assert_allclose(analytic["ipA.0"], parts["ipA.0"] + parts["ipB.0"], rtol=1e-5, atol=1e-6)
    assert np.abs(parts["ipA.0"]).max() > 1e-3 and np.abs(parts["ipB.0"]).max() > 1e-3
    for key in ("ipA.1", "ipB.1", "ipC.0", "ipC.1"):
        np.testing.assert_allclose(analytic[key], parts[key], rtol=1e-5, atol=1e-6)


def test_net_refuses_a_plan_compiled_for_the_other_device(gpu_device):
    from trainnet.errors import TrainnetError
    from trainnet.runtime.device import CPU
    with pytest.raises(TrainnetError, match="compiled for a GPU.*gpu=False"):
        Net(compile_net(lenet_with_input(), "TRAIN", gpu=True), CPU)
    with pytest.raises(TrainnetError, match="compiled for the CPU.*gpu=True"):
        Net(compile_net(lenet_with_input(), "TRAIN"), gpu_device)
