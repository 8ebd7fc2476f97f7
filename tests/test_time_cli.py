"""`trainnet time`: per layer forward and backward ms, share of the iteration, GFLOP/s, totals,
the most expensive layers marked, the FLOP counting rule stated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainnet.cli import main
from trainnet.cli.timing import MARKED, backward_flops
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net

NET = """name: small
layer:
  - {name: data, type: DummyData, top: [x, t], shape: [{dim: [8, 2, 8, 8]}, {dim: [8, 4]}],
     data_filler: [{type: gaussian}, {type: gaussian}]}
  - {name: conv, type: Convolution, bottom: x, top: c, num_output: 4, kernel_size: 3,
     weight_filler: {type: xavier}}
  - {name: relu, type: ReLU, bottom: c, top: c}
  - {name: ip, type: InnerProduct, bottom: c, top: y, num_output: 4, weight_filler: {type: xavier}}
  - {name: sig, type: Sigmoid, bottom: y, top: s}
  - {name: loss, type: EuclideanLoss, bottom: [s, t], top: loss}
"""

ROW = re.compile(r"^(\S+)\s+(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\S+)(?:\s+(#\d))?$")


def run_time(folder: Path, *args: str) -> str:
    (folder / "net.yaml").write_text(NET)
    result = CliRunner().invoke(main, ["time", str(folder / "net.yaml"), "--device", "cpu",
                                       "--iterations", "3", *args])
    assert result.exit_code == 0, result.output
    return result.output


def rows(out: str) -> dict[str, re.Match]:
    return {m[1]: m for m in map(ROW.match, out.splitlines()) if m and m[1] != "total"}


def test_columns_shares_and_rates(tmp_path):
    out = run_time(tmp_path)
    assert re.search(r"^layer\s+type\s+forward ms\s+backward ms\s+share %\s+fwd GFLOP/s\s+"
                     r"bwd GFLOP/s\s+top$", out, re.M), out
    assert "backward counted as the forward's" in out   # the rule is stated
    found = rows(out)
    assert list(found) == ["data", "conv", "ip", "sig", "loss"]   # plan order (ReLU fused)
    assert sum(float(m[5]) for m in found.values()) == pytest.approx(100, abs=0.3)
    assert float(found["conv"][6]) > 0 and float(found["ip"][7]) > 0   # GFLOP/s present
    assert found["data"][6] == "-"                                     # counts no flops
    assert sorted(m[8] for m in found.values() if m[8]) == [f"#{i}" for i in range(1, MARKED + 1)]
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert float(total.split()[1]) == pytest.approx(sum(float(m[3]) for m in found.values()), abs=0.01)
    for label in ("Average Forward pass:", "Average Backward pass:", "Average Forward-Backward:",
                  "average iteration:"):
        assert label in out


def test_test_phase_has_no_backward(tmp_path):
    found = rows(run_time(tmp_path, "--phase", "TEST"))
    assert all(float(m[4]) == 0 and m[7] == "-" for m in found.values())


def test_backward_flops_rule():
    steps = {s.name: s for s in compile_net(load_net_text(NET)).steps}
    assert backward_flops(steps["conv"]) == steps["conv"].flops()       # weights only: x needs none
    assert backward_flops(steps["ip"]) == 2 * steps["ip"].flops()       # bottom and weights
    assert backward_flops(steps["sig"]) == steps["sig"].flops()         # bottom only
    assert backward_flops(steps["data"]) == 0
