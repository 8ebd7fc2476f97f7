"""Running nets: train and test."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click
import numpy as np

from trainnet.cli.common import (compile_for, device_options, echo, main, state_options,
                                 user_errors)
from trainnet.cli.signals import handled, signal_options
from trainnet.errors import TrainnetError


@main.command()
@click.argument("solver", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False), help="Initialise from these weights "
              "(safetensors, or a Caffe .caffemodel), matched by layer name: fine-tuning.")
@click.option("--snapshot", "state", type=click.Path(dir_okay=False),
              help="Resume from this solver state: trainnet's .solverstate (exactly), or Caffe's "
              ".solverstate or .solverstate.h5 (weights, history and iteration).")
@device_options(graph=True)
@signal_options
@user_errors
def train(solver, weights, state, device, tf32, no_graph, sigint_effect, sighup_effect):
    """Train the net that SOLVER (a solver YAML or prototxt file) names.  SIGINT (Ctrl-C),
    SIGTERM and SIGQUIT stop it after the current iteration with a snapshot; SIGHUP and
    SIGUSR1 take a snapshot and go on (see --sigint-effect, --sighup-effect)."""
    from trainnet.netcfg import load_solver
    from trainnet.runtime.device import get_device
    from trainnet.solver.solver import Solver
    from trainnet.solver.weights import FINETUNE, load_weights

    if weights and state:
        raise TrainnetError("give --weights or --snapshot, not both")
    cfg = load_solver(solver)
    s = Solver(cfg, get_device(device, tf32=tf32), log=echo, graph=not no_graph)
    if weights:
        for line in load_weights(Path(weights), s.net.params, FINETUNE).lines():
            echo(line)
    if state:
        s.restore(Path(state))
    with handled(s, sigint_effect, sighup_effect):
        s.solve()
    if s.stop_requested:
        sys.exit(128 + getattr(signal.Signals, s.stop_reason, signal.SIGINT))


@main.command()
@click.option("--model", required=True, help="The net: YAML, prototxt, or zoo:NAME.")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="Weights (safetensors, or a Caffe .caffemodel).")
@click.option("--iterations", default=50, show_default=True, type=click.IntRange(min=1),
              help="Number of batches to average over.")
@click.option("--phase", default="TEST", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@state_options
@device_options(graph=True)
@user_errors
def test(model, weights, iterations, phase, stages, level, device, tf32, no_graph):
    """Run MODEL forward for ITERATIONS batches with WEIGHTS and print the averaged outputs."""
    from trainnet.netcfg import load_net
    from trainnet.runtime.device import get_device
    from trainnet.runtime.net import Net
    from trainnet.solver.solver import average_outputs
    from trainnet.solver.weights import EXACT, load_weights

    dev = get_device(device, tf32=tf32)
    plan = compile_for(load_net(model), phase, stages, level, backward=False, gpu=dev.is_gpu)
    unfilled = [top for step in plan.steps if step.layer.filled_by_user for top in step.tops]
    if unfilled:
        raise TrainnetError(f"{model}: nothing fills the input blob{'s' * (len(unfilled) > 1)} "
                            f"{', '.join(unfilled)} (Input layers, a deploy net): test needs a net "
                            "that reads its data (a train_val net); classify runs a deploy net")
    net = Net(plan, dev, rng=np.random.default_rng(0), graph=not no_graph)
    for line in load_weights(Path(weights), net.params, EXACT).lines():
        echo(line)
    outputs = average_outputs(net, iterations)
    for name, value in outputs.items():
        if np.ndim(value) == 0:
            echo(f"{name} = {float(value):.6g}")
        else:
            echo(f"{name} = {np.array2string(np.asarray(value), precision=4)}")
