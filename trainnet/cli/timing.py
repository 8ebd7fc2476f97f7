"""`trainnet time`: forward and backward per layer, as `caffe time`, with each layer's share of
the iteration and the GFLOP/s it achieves."""

from __future__ import annotations

import click
import numpy as np

from trainnet.cli.common import (compile_for, device_options, echo, main, state_options,
                                 user_errors)
from trainnet.cli.threads import apply_threads, threads_option

MARKED = 3   # the most expensive layers marked in the table

FLOPS_RULE = ("GFLOP/s: forward flops as each layer declares them (`trainnet plan`'s flops: a "
              "multiply-add counts 2);\n  backward counted as the forward's once for the bottoms' "
              "gradients and once more for the parameters' gradients\n  (about 2x forward for a "
              "layer with weights; layers declare no backward count); '-' where a layer counts none")


def backward_flops(step) -> int:
    """The rule of FLOPS_RULE: forward flops once per kind of gradient the step computes."""
    if not step.need_backward:
        return 0
    kinds = int(any(step.propagate_down)) + int(bool(step.frozen) and not all(step.frozen))
    return step.flops() * kinds


def _rate(flops: float, seconds: float) -> str:
    return f"{flops / seconds / 1e9:.2f}" if flops and seconds > 0 else "-"


def timing_table(plan, times) -> list[str]:
    """The table's lines: a row per step in plan order (ms per iteration, share of the summed
    layer times, GFLOP/s forward and backward, the MARKED most expensive ranked), then totals."""
    n = times.iterations
    spent = {s.name: times.forward[s.name] + times.backward[s.name] for s in plan.steps}
    whole = sum(spent.values()) or 1.0
    ranked = sorted(spent, key=spent.get, reverse=True)[:MARKED]
    width = max([len("layer")] + [len(s.name) for s in plan.steps]) + 2
    head = (f"{'layer':<{width}}{'type':<18}{'forward ms':>12}{'backward ms':>13}{'share %':>9}"
            f"{'fwd GFLOP/s':>13}{'bwd GFLOP/s':>13}  top")
    out = [FLOPS_RULE, head]
    flops_f = flops_b = 0
    for s in plan.steps:
        fwd, bwd = times.forward[s.name], times.backward[s.name]
        f, b = s.flops(), backward_flops(s)
        flops_f, flops_b = flops_f + f, flops_b + b
        mark = f"#{ranked.index(s.name) + 1}" if s.name in ranked and spent[s.name] > 0 else ""
        out.append(f"{s.name:<{width}}{s.type:<18}{1e3 * fwd / n:>12.3f}{1e3 * bwd / n:>13.3f}"
                   f"{100 * spent[s.name] / whole:>9.1f}{_rate(f * n, fwd):>13}"
                   f"{_rate(b * n, bwd):>13}  {mark}".rstrip())
    fwd, bwd = sum(times.forward.values()), sum(times.backward.values())
    out.append(f"{'total':<{width}}{'':<18}{1e3 * fwd / n:>12.3f}{1e3 * bwd / n:>13.3f}"
               f"{100.0 if sum(spent.values()) else 0.0:>9.1f}{_rate(flops_f * n, fwd):>13}"
               f"{_rate(flops_b * n, bwd):>13}")
    out += [f"Average Forward pass: {1e3 * fwd / n:.3f} ms",
            f"Average Backward pass: {1e3 * bwd / n:.3f} ms",
            f"Average Forward-Backward: {1e3 * (fwd + bwd) / n:.3f} ms",
            f"average iteration: {1e3 * times.total / n:.3f} ms over {n} iterations "
            "(each layer synchronized: slower than a graph-replayed iteration of `train`)"]
    return out


@main.command("time", epilog="""\b
Example:
  trainnet time configs/lenet/lenet_train_test.yaml --iterations 50
  trainnet time zoo:resnet50 --phase TEST --device cuda --threads 2""")
@click.argument("net", type=click.Path(dir_okay=False))
@click.option("--iterations", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--phase", default="TRAIN", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@state_options
@device_options(graph=False)
@threads_option
@user_errors
def time_(net, iterations, phase, stages, level, device, tf32, threads):
    """Time forward and backward of NET per layer, as `caffe time` does, with each layer's share
    of the iteration and its GFLOP/s (on a GPU each layer is synchronized, so the sum is slower
    than a graph-replayed iteration of `train`)."""
    from trainnet.netcfg import load_net
    from trainnet.runtime.device import get_device
    from trainnet.runtime.net import Net

    said = apply_threads(threads)
    if said:
        echo(said)
    dev = get_device(device, tf32=tf32)
    n = Net(compile_for(load_net(net), phase, stages, level, gpu=dev.is_gpu), dev,
            rng=np.random.default_rng(0))
    echo(f"Timing {n.plan.net_name} ({phase}) on {dev}: {iterations} iterations after one warm-up")
    for line in timing_table(n.plan, n.time_steps(iterations)):
        echo(line)
