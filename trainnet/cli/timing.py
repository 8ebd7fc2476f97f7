"""`trainnet time`: forward and backward per layer, as `caffe time`."""

from __future__ import annotations

import click
import numpy as np

from trainnet.cli.common import compile_for, device_options, echo, main, state_options, user_errors


@main.command("time")
@click.argument("net", type=click.Path(dir_okay=False))
@click.option("--iterations", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--phase", default="TRAIN", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@state_options
@device_options(graph=False)
@user_errors
def time_(net, iterations, phase, stages, level, device, tf32):
    """Time forward and backward of NET per layer, as `caffe time` does (on a GPU each layer
    is synchronized, so the sum is slower than a graph-replayed iteration of `train`)."""
    from trainnet.netcfg import load_net
    from trainnet.runtime.device import get_device
    from trainnet.runtime.net import Net

    dev = get_device(device, tf32=tf32)
    n = Net(compile_for(load_net(net), phase, stages, level, gpu=dev.is_gpu), dev,
            rng=np.random.default_rng(0))
    times = n.time_steps(iterations)
    echo(f"{'layer':<24}{'forward ms':>12}{'backward ms':>13}")
    for name, fwd in times.forward.items():
        echo(f"{name:<24}{1e3 * fwd / iterations:>12.3f}{1e3 * times.backward[name] / iterations:>13.3f}")
    echo(f"average iteration: {1e3 * times.total / iterations:.3f} ms over {iterations} iterations")
