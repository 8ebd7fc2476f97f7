"""Running nets: train, test, plan and time."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click
import numpy as np

from trainnet.cli.common import device_options, echo, main, user_errors
from trainnet.cli.signals import handled, signal_options
from trainnet.errors import TrainnetError


def state_options(fn):
    """--stage (repeatable) and --level: the net state's stages and level besides the phase,
    for include/exclude rules (as `caffe test --stage --level`)."""
    fn = click.option("--level", type=int, default=None,
                      help="The net state's level (default: the net's own state.level).")(fn)
    return click.option("--stage", "stages", multiple=True, help="A stage of the net state, "
                        "added to the net's own state.stage; repeat for several.")(fn)


def compile_for(cfg, phase, stages, level, **options):
    """``cfg`` compiled for ``phase`` with --stage and --level merged over its own state."""
    from trainnet.netcfg import NetState
    from trainnet.netcfg.solver_nets import merge_state
    from trainnet.plan import compile_net

    given = NetState(stage=list(stages), **({} if level is None else {"level": level}))
    state = merge_state(phase, cfg.state, given)
    return compile_net(cfg, phase, level=state.level, stages=list(state.stage), **options)


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


@main.command()
@click.argument("net", type=click.Path(dir_okay=False))
@click.option("--phase", default="TRAIN", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@click.option("--no-reuse", is_flag=True, help="Plan memory without reusing dead buffers.")
@click.option("--gpu", is_flag=True, help="Plan for the GPU path (its layers keep fewer scratch "
              "buffers than the CPU's).")
@click.option("--python", "as_python", is_flag=True, help="Plan as trainnet.caffe.Net does: every "
              "blob in its own memory, nothing run in place or folded beyond the config.")
@click.option("--keep", multiple=True, metavar="BLOB", help="Keep BLOB readable after a pass in the "
              "packed plan (as Net(..., keep=[...])); repeatable.")
@state_options
@user_errors
def plan(net, phase, no_reuse, gpu, as_python, keep, stages, level):
    """Print the compiled plan of NET: shapes, parameters, FLOPs and memory."""
    from trainnet.netcfg import load_net
    from trainnet.plan import format_plan
    from trainnet.plan.text import human_bytes

    cfg = load_net(net)
    options = dict(reuse_memory=not no_reuse, gpu=gpu, keep=list(keep))
    if as_python:
        options.update(reuse_memory=False, in_place=False, fuse=False)
    compiled = compile_for(cfg, phase, stages, level, **options)
    echo(format_plan(compiled))
    if as_python:
        packed = compile_for(cfg, phase, stages, level, gpu=gpu)
        echo(f"packed (trainnet train): arena {human_bytes(packed.arena_bytes)}; this plan keeps "
             "every blob readable after a pass")
    if compiled.backward:
        forward_only = compile_for(cfg, phase, stages, level, backward=False, **options)
        echo(f"forward only:      activations {human_bytes(forward_only.blob_bytes)}, arena "
              f"{human_bytes(forward_only.arena_bytes)}: the same net and batch without backward")


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
