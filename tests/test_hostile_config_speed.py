"""Large configs load and plan in time that grows linearly (or n log n) with their size.

Times are CPU seconds of this process (``time.process_time``), the best of a few runs, so other
work on the machine moves them little; the assertions are ratios between a size and four times
it, far from what a quadratic pass gives (16), or budgets several times the measured figure.
"""

from __future__ import annotations

import time

import pytest
import yaml

from trainnet.netcfg import load_net_text, yaml_reader
from trainnet.plan import compile_net, format_plan
from trainnet.plan.memory import Interval, pack


def best_time(fn, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def chain_yaml(n: int, in_place: bool = True) -> str:
    """Input, then n InnerProduct + ReLU pairs, then a loss: a training net of 2n+2 layers."""
    lines = ["name: chain", "layer:",
             "  - {name: data, type: Input, top: [data, label], shape: [{dim: [2, 8]}, {dim: [2]}]}"]
    prev = "data"
    for i in range(n):
        lines.append(f"  - {{name: ip{i}, type: InnerProduct, bottom: {prev}, top: ip{i}, "
                     "num_output: 8}")
        top = f"ip{i}" if in_place else f"relu{i}"
        lines.append(f"  - {{name: relu{i}, type: ReLU, bottom: ip{i}, top: {top}}}")
        prev = top
    lines.append(f"  - {{name: loss, type: SoftmaxWithLoss, bottom: [{prev}, label], top: loss}}")
    return "\n".join(lines) + "\n"


def block_yaml(megabytes: float) -> str:
    """A net in block style (one field a line, as configs are written) of about this size."""
    parts, size, i, prev = ["name: big\nlayer:\n  - name: data\n    type: Input\n    top: data\n"
                            "    shape: {dim: [2, 8]}\n"], 0, 0, "data"
    while size < megabytes * 2**20:
        part = (f"  - name: ip{i}\n    type: InnerProduct\n    bottom: {prev}\n    top: ip{i}\n"
                "    num_output: 8\n    weight_filler:\n      type: gaussian\n      std: 1e-2\n"
                "    param:\n      - {lr_mult: 1, decay_mult: 1}\n      - {lr_mult: 2, decay_mult: 0}\n")
        parts.append(part)
        size, prev, i = size + len(part), f"ip{i}", i + 1
    return "".join(parts)


def test_yaml_is_read_by_the_c_parser_where_pyyaml_has_it():
    if yaml.__with_libyaml__:
        assert yaml_reader.LOADER is yaml.CSafeLoader
    else:
        assert yaml_reader.LOADER is yaml.SafeLoader


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_a_large_yaml_net_loads_in_linear_time():
    small, large = block_yaml(0.5), block_yaml(2)
    t_small = best_time(lambda: load_net_text(small, "small.yaml"), runs=2)
    t_large = best_time(lambda: load_net_text(large, "large.yaml"), runs=2)
    # 2 MB took about 6 s with the node walk (31 s for 10 MB); now well under 1.5 s
    assert t_large < 4.0, t_large
    assert t_large / t_small < 8, (t_small, t_large)


@pytest.mark.parametrize("in_place", [True, False], ids=["relu-in-place", "relu-renamed"])
def test_plan_time_grows_near_linearly_with_layers(in_place):
    """Compile (TRAIN: splits, shapes, backward, in place, fusion, memory) and print a chain of
    n and 4n layer pairs; a quadratic pass (the packer, the in-place renaming) made this 16x."""
    n = 300
    small = load_net_text(chain_yaml(n, in_place), "small.yaml")
    large = load_net_text(chain_yaml(4 * n, in_place), "large.yaml")
    t_small = best_time(lambda: format_plan(compile_net(small, "TRAIN")))
    t_large = best_time(lambda: format_plan(compile_net(large, "TRAIN")))
    assert t_large / t_small < 8, (t_small, t_large)


def test_packing_nested_lifetimes_is_not_quadratic():
    """A training chain's activations all live across the turn from forward to backward: each
    buffer overlaps every other, which made first-fit packing compare each with all before it."""
    def intervals(n):
        return [Interval(("data", i), 64 * (1 + i % 3), i, 2 * n - i) for i in range(n)]

    n = 1500
    t_small = best_time(lambda: pack(intervals(n)))
    t_large = best_time(lambda: pack(intervals(4 * n)))
    assert t_large / t_small < 8, (t_small, t_large)
