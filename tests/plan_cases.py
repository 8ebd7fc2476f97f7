"""What several of the tests/test_plan_*.py files share: configs and small helpers."""

from pathlib import Path

import pytest

from trainnet.errors import ConfigError
from trainnet.netcfg import NetConfig, load_net_text
from trainnet.plan import compile_net


LENET = Path(__file__).resolve().parents[1] / "configs" / "lenet" / "lenet_train_test.yaml"


def net(text: str, file: str = "x.yaml") -> NetConfig:
    return load_net_text(text, file)


def compile_error(text: str, phase: str = "TRAIN") -> str:
    with pytest.raises(ConfigError) as info:
        compile_net(net(text), phase)
    return str(info.value)


def names(layers) -> list[str]:
    return [l.name for l in layers]


LOSS_ALSO_CONSUMED = """\
name: weighted
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 3, loss_weight: 0.25,
     weight_filler: {type: gaussian, std: 0.5}, bias_filler: {type: gaussian, std: 0.5}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""


INPUT = "  - {name: input, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}\n"


def lenet_with_input(batch: int = 8) -> NetConfig:
    """LeNet with its Data layers replaced by one Input layer (no dataset needed)."""
    text = LENET.read_text()
    body = text[text.index("  - name: conv1"):]
    head = (f"name: LeNet\nlayer:\n  - {{name: input, type: Input, top: [data, label], "
            f"shape: [{{dim: [{batch}, 1, 28, 28]}}, {{dim: [{batch}]}}]}}\n")
    return net(head + body, "lenet_input.yaml")


SHARED = """\
name: shared
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [3, 4]}, {dim: [3]}]}
  - name: ipA
    type: InnerProduct
    bottom: data
    top: a
    num_output: 4
    param: [{name: shared}, {lr_mult: 2}]
    weight_filler: {type: gaussian, std: 0.5}
    bias_filler: {type: gaussian, std: 0.5}
  - {name: reluA, type: ReLU, bottom: a, top: a}
  - name: ipB
    type: InnerProduct
    bottom: a
    top: b
    num_output: 4
    param: [{name: shared}]
    bias_filler: {type: gaussian, std: 0.5}
  - name: ipC
    type: InnerProduct
    bottom: b
    top: c
    num_output: 3
    weight_filler: {type: gaussian, std: 0.5}
  - {name: loss, type: SoftmaxWithLoss, bottom: [c, label], top: loss}
"""
