"""Running nets: train and test."""

from __future__ import annotations

import math
import shlex
import signal
import sys
from pathlib import Path
from typing import Optional

import click
import numpy as np

from trainnet.cli.common import (compile_for, device_options, echo, main, state_options,
                                 user_errors)
from trainnet.cli.progress import RunProgress
from trainnet.cli.signals import handled, signal_options
from trainnet.cli.threads import apply_threads, threads_option
from trainnet.errors import TrainnetError

DEFAULT_TEST_ITERATIONS = 50  # Caffe's, when the test source's size is not known


def load_config(solver: str, sets: tuple[str, ...], threads: Optional[int],
                notes: Optional[list[str]] = None):
    """The solver of the file ``solver`` with the ``--set`` overrides applied, and ``threads``
    data workers for each data layer that does not set its own; ``notes`` gets what the run
    should say of the overrides (one that changed several layers of a name)."""
    from trainnet.netcfg import load_net, load_solver
    from trainnet.netcfg.as_run import with_layer_default
    from trainnet.netcfg.overrides import check_keys, load_solver_with, parse_override

    overrides = [parse_override(text) for text in sets]
    check_keys(overrides)
    cfg = load_solver_with(solver, overrides, notes) if overrides else load_solver(solver)
    return cfg if threads is None else with_layer_default(cfg, "workers", threads, load_net)


def _data_place(path: str, net) -> Optional[Path]:
    """Where the run reads the data path ``path`` of ``net`` (None: nowhere yet)."""
    from trainnet.data.paths import DataRoot, candidates

    for place in candidates(path, DataRoot.of(net.file)):
        if place.exists() or (any(c in path for c in "*?[") and list(place.parent.glob(place.name))):
            return place
    return None


def config_files(cfg, prefix: str, command: list[str], resumed_at: Optional[int] = None,
                 weights: Optional[str] = None, state: Optional[Path] = None,
                 threads: Optional[int] = None, device: str = "") -> dict[Path, str]:
    """The solver and nets as run (``--set`` applied), to be written beside the snapshots.  A
    resumed run (``--resume``, ``--snapshot``) keeps the files of the run it resumes and writes
    its own beside them, the iteration in their names: ``PREFIX_run_solver_from_iter_N.yaml``,
    ``PREFIX_run_net_from_iter_N.yaml`` (always, even when they say the same).  The solver's
    file opens with a comment block: what else repeating the run needs (the weights it started
    from, the state it resumed, the same ``--threads`` for bit-exact sums)."""
    from trainnet.netcfg import load_net
    from trainnet.netcfg.as_run import resolved_files

    def where(path) -> str:
        return str(Path(path).resolve())

    lines = ["The solver as this ran it: trainnet " + shlex.join(command),
             "",
             "To repeat this run from these files, it needs besides them:",
             "  initial weights: " + (f"{where(weights)} (--weights {weights})" if weights else
                                      "none (the fillers', from random_seed)"),
             "  resumed from: " + (f"{where(state)} (iteration {resumed_at}): give it as --snapshot"
                                   if state is not None else "nothing (it started at iteration 0)"),
             "  threads: " + (f"--threads {threads}: give the same count for bit-exact results "
                              "(BLAS sums in an order that depends on its thread count)"
                              if threads is not None else
                              "unset (the BLAS library's own choice): a repetition may differ in "
                              "the last bits; set --threads N to repeat bit for bit"),
             "  the same data files (the paths below), trainnet version, BLAS and device"
             + (f" ({device})" if device else "")]
    if cfg.random_seed < 0:
        lines.append("  random_seed: unset (-1): a run from this file draws other random numbers; "
                     "set random_seed to repeat a run exactly")
    tag = "" if resumed_at is None else f"_from_iter_{resumed_at}"
    return resolved_files(cfg, prefix, load_net, _data_place, "\n".join(lines), tag)


def _record(s, cfg, solver, sets, weights, resumed, threads) -> None:
    """The as-run config for the solver ``s`` to write as it starts, and the files it must not
    write over (the solver file ``solver`` and its nets)."""
    from trainnet.netcfg import load_solver
    from trainnet.netcfg.as_run import input_files

    command = sys.argv[1:] if sys.argv[1:2] == ["train"] else \
        ["train", solver, *(a for x in sets for a in ("--set", x))]
    s.files.configs = config_files(cfg, s.prefix, command, None if resumed is None else s.iter,
                                   weights, resumed, threads, str(s.device))
    s.files.inputs = input_files(solver, load_solver)


def _start_from(s, weights, state, resume, log) -> Optional[Path]:
    """Initialise the solver ``s`` from ``--weights``, ``--snapshot`` or ``--resume``; returns
    the state resumed from (None: a run from iteration 0)."""
    from trainnet.solver import resume as resuming
    from trainnet.solver.weights import FINETUNE, load_weights

    if weights:
        for line in load_weights(Path(weights), s.net.params, FINETUNE).lines():
            log(line)
    if state:
        s.restore(Path(state))
        return Path(state)
    if resume is not None:
        return resuming.resume_newest(s, resume or s.prefix)
    return None


@main.command(epilog="""\b
Example:
  trainnet train configs/lenet/lenet_solver.yaml
  trainnet train solver.yaml --set base_lr=0.001 --set net.conv1.num_output=32
  trainnet train solver.yaml --resume            # the newest complete snapshot
  trainnet train out/lenet_solver.yaml --set snapshot_prefix=again/lenet   # repeat a run""")
@click.argument("solver", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False), help="Initialise from these weights "
              "(safetensors, or a Caffe .caffemodel), matched by layer name: fine-tuning.")
@click.option("--snapshot", "state", type=click.Path(dir_okay=False),
              help="Resume from this solver state: trainnet's .solverstate (exactly), or Caffe's "
              ".solverstate or .solverstate.h5 (weights, history and iteration).")
@click.option("--resume", is_flag=False, flag_value="", default=None, metavar="[PREFIX|DIR]",
              help="Resume from the newest complete snapshot of a run: of this snapshot prefix; "
              "of this folder (the solver's own prefix there, else the one prefix it holds); "
              "alone, of the solver's own snapshot_prefix.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a solver field (base_lr=0.001) or a layer's field "
              "(net.conv1.num_output=32; train_net., test_net.) for this run; repeatable.")
@threads_option
@device_options(graph=True)
@signal_options
@user_errors
def train(solver, weights, state, resume, sets, threads, device, tf32, no_graph, sigint_effect,
          sighup_effect):
    """Train the net that SOLVER (a solver YAML or prototxt file) names; the log goes to
    stderr, as glog's.  SIGINT (Ctrl-C), SIGTERM and SIGQUIT stop it after the current iteration
    with a snapshot; SIGHUP and SIGUSR1 take a snapshot and go on (see --sigint-effect,
    --sighup-effect).  The solver and nets as run are saved as PREFIX_run_solver.yaml and
    PREFIX_run_net.yaml beside the snapshots (never over a file that trainnet did not write)."""
    from trainnet.runtime.device import get_device
    from trainnet.solver.solver import Solver

    if sum(x is not None for x in (weights, state, resume)) > 1:
        raise TrainnetError("give one of --weights, --snapshot and --resume")
    progress = RunProgress()
    notes: list[str] = [apply_threads(threads) or ""]
    cfg = load_config(solver, sets, threads, notes)
    for note in filter(None, notes):
        progress.log(note)
    s = Solver(cfg, get_device(device, tf32=tf32), log=progress.log, graph=not no_graph)
    resumed = _start_from(s, weights, state, resume, progress.log)
    if resumed is not None and s.iter >= s.cfg.max_iter:  # a finished run: no snapshot again
        progress.log(f"already at max_iter {s.cfg.max_iter}: nothing to train"
                     if s.iter == s.cfg.max_iter else f"already at iteration {s.iter}, past "
                     f"max_iter {s.cfg.max_iter}: nothing to train")
        return
    _record(s, cfg, solver, sets, weights, resumed, threads)
    progress.follow(s)
    try:
        with handled(s, sigint_effect, sighup_effect):
            s.solve()
    finally:
        progress.close()
    if s.stop_requested:
        sys.exit(128 + getattr(signal.Signals, s.stop_reason, signal.SIGINT))


def source_iterations(net) -> Optional[int]:
    """Batches that cover the net's data source once (the largest over its data layers; the
    last batch wraps to the start of the source), or None when no data layer knows its size."""
    counts = []
    for state in net.states.values():
        reader = getattr(state, "reader", state)  # a GPU's staged reader wraps the host one
        sampler, batch = getattr(reader, "sampler", None), getattr(reader, "batch", None)
        if sampler is not None and batch:
            counts.append(math.ceil(sampler.n / batch))
    return max(counts) if counts else None


@main.command(epilog="""\b
Example:
  trainnet test --model configs/lenet/lenet_train_test.yaml --weights lenet_iter_10000.safetensors
  trainnet test --model net.yaml --weights w.safetensors --iterations 10 --threads 4""")
@click.option("--model", required=True, help="The net: YAML, prototxt, or zoo:NAME.")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="Weights (safetensors, or a Caffe .caffemodel).")
@click.option("--iterations", default=None, type=click.IntRange(min=1),
              help="Number of batches to average over [default: enough to cover the data source "
              f"once, when its size is known; else {DEFAULT_TEST_ITERATIONS}, as Caffe].")
@click.option("--phase", default="TEST", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@state_options
@threads_option
@device_options(graph=True)
@user_errors
def test(model, weights, iterations, phase, stages, level, threads, device, tf32, no_graph):
    """Run MODEL forward for ITERATIONS batches with WEIGHTS and print the averaged outputs
    (on stdout; the log lines go to stderr)."""
    from trainnet.netcfg import load_net
    from trainnet.netcfg.as_run import net_with_default
    from trainnet.runtime.device import get_device
    from trainnet.runtime.net import Net
    from trainnet.solver.solver import average_outputs
    from trainnet.solver.weights import EXACT, load_weights

    progress = RunProgress()
    threads_line = apply_threads(threads)
    if threads_line:
        progress.log(threads_line)
    dev = get_device(device, tf32=tf32)
    cfg = load_net(model)
    if threads is not None:
        cfg = net_with_default(cfg, "workers", threads)  # data layers' threads
    plan = compile_for(cfg, phase, stages, level, backward=False, gpu=dev.is_gpu)
    unfilled = [top for step in plan.steps if step.layer.filled_by_user for top in step.tops]
    if unfilled:
        raise TrainnetError(f"{model}: nothing fills the input blob{'s' * (len(unfilled) > 1)} "
                            f"{', '.join(unfilled)} (Input layers, a deploy net): test needs a net "
                            "that reads its data (a train_val net); classify runs a deploy net")
    net = Net(plan, dev, rng=np.random.default_rng(0), graph=not no_graph)
    for line in load_weights(Path(weights), net.params, EXACT).lines():
        progress.log(line)
    if iterations is None:
        iterations = source_iterations(net)
        progress.log(f"Testing {iterations} batches: the data source once" if iterations else
                     f"Testing {DEFAULT_TEST_ITERATIONS} batches (the data source's size is not "
                     "known; --iterations N sets it)")
        iterations = iterations or DEFAULT_TEST_ITERATIONS
    progress.start("test", iterations)
    done = iter(range(1, iterations + 1))
    try:
        outputs = average_outputs(net, iterations, stop=lambda: progress.to(next(done) - 1))
        progress.to(iterations)  # the last batch done: N/N
    finally:
        progress.close()
    for name, value in outputs.items():
        if np.ndim(value) == 0:
            echo(f"{name} = {float(value):.6g}")
        else:
            echo(f"{name} = {np.array2string(np.asarray(value), precision=4)}")
