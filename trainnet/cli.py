"""The `trainnet` command: train, test, plan, time, data."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from pathlib import Path

import click
import numpy as np

from trainnet.errors import TrainnetError


def _user_errors(fn):
    """A user's mistake ends in one line on stderr and exit status 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrainnetError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


def _echo(line: str) -> None:
    click.echo(line)


@click.group()
@click.version_option(package_name="trainnet")
def main():
    """trainnet: train and test Caffe-style nets described in YAML config files."""


def _device_options(graph: bool):
    """--device and --tf32 (and --no-cuda-graph for commands that replay a graph)."""
    def deco(fn):
        fn = click.option("--tf32", is_flag=True, help="Let cuBLAS use TF32 for GEMMs on the GPU "
                          "(faster on Ampere and later; results differ from fp32 near 1e-3).")(fn)
        if graph:
            fn = click.option("--no-cuda-graph", "no_graph", is_flag=True,
                              help="Launch every kernel eagerly instead of replaying one CUDA "
                              "graph per iteration (for debugging).")(fn)
        return click.option("--device", default="auto", show_default=True,
                            help="cpu, cuda, cuda:N, or auto (the GPU when there is one).")(fn)
    return deco


@main.command()
@click.argument("solver", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False), help="Initialise from these weights "
              "(safetensors, or a Caffe .caffemodel), matched by layer name: fine-tuning.")
@click.option("--snapshot", "state", type=click.Path(dir_okay=False),
              help="Resume exactly from this .solverstate file.")
@_device_options(graph=True)
@_user_errors
def train(solver, weights, state, device, tf32, no_graph):
    """Train the net that SOLVER (a solver YAML or prototxt file) names."""
    from trainnet.netcfg import load_solver
    from trainnet.runtime.device import get_device
    from trainnet.solver.snapshot import load_weights
    from trainnet.solver.solver import Solver

    if weights and state:
        raise TrainnetError("give --weights or --snapshot, not both")
    cfg = load_solver(solver)
    s = Solver(cfg, get_device(device, tf32=tf32), log=_echo, graph=not no_graph)
    if weights:
        loaded, skipped = load_weights(Path(weights), s.net.params)
        _echo(f"Loaded weights for {len(loaded)} layers from {weights}: {', '.join(loaded) or 'none'}")
        if skipped:
            _echo(f"Skipped layers not in this net: {', '.join(skipped)}")
        missing = sorted({slot.key[0] for slot in s.net.params.slots} - set(loaded))
        if missing:
            _echo(f"Layers not in the weights file (initialised by their fillers): {', '.join(missing)}")
    if state:
        s.restore(Path(state))

    def stop(signum, frame):
        _echo("Interrupted: finishing this iteration, then snapshotting (Ctrl-C again to abort)")
        s.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        s.solve()
    finally:
        signal.signal(signal.SIGINT, previous)
    if s.stop_requested:
        sys.exit(130)


@main.command()
@click.option("--model", required=True, help="The net: YAML, prototxt, or zoo:NAME.")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="Weights (safetensors, or a Caffe .caffemodel).")
@click.option("--iterations", default=50, show_default=True, type=click.IntRange(min=1),
              help="Number of batches to average over.")
@click.option("--phase", default="TEST", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@_device_options(graph=True)
@_user_errors
def test(model, weights, iterations, phase, device, tf32, no_graph):
    """Run MODEL forward for ITERATIONS batches with WEIGHTS and print the averaged outputs."""
    from trainnet.netcfg import load_net
    from trainnet.plan import compile_net
    from trainnet.runtime.device import get_device
    from trainnet.runtime.net import Net
    from trainnet.solver.snapshot import load_weights
    from trainnet.solver.solver import average_outputs

    dev = get_device(device, tf32=tf32)
    plan = compile_net(load_net(model), phase, backward=False, gpu=dev.is_gpu)
    net = Net(plan, dev, rng=np.random.default_rng(0), graph=not no_graph)
    loaded, skipped = load_weights(Path(weights), net.params)
    missing = sorted({slot.key[0] for slot in net.params.slots} - set(loaded))
    if missing:
        raise TrainnetError(f"{weights}: no weights for layers {', '.join(missing)}")
    if skipped:
        _echo(f"Skipped layers of the weights file not in this net: {', '.join(skipped)}")
    outputs = average_outputs(net, iterations)
    for name, value in outputs.items():
        if np.ndim(value) == 0:
            _echo(f"{name} = {float(value):.6g}")
        else:
            _echo(f"{name} = {np.array2string(np.asarray(value), precision=4)}")


@main.command()
@click.argument("net", type=click.Path(dir_okay=False))
@click.option("--phase", default="TRAIN", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@click.option("--no-reuse", is_flag=True, help="Plan memory without reusing dead buffers.")
@click.option("--gpu", is_flag=True, help="Plan for the GPU path (its layers keep fewer scratch "
              "buffers than the CPU's).")
@_user_errors
def plan(net, phase, no_reuse, gpu):
    """Print the compiled plan of NET: shapes, parameters, FLOPs and memory."""
    from trainnet.netcfg import load_net
    from trainnet.plan import compile_net, format_plan
    from trainnet.plan.text import human_bytes

    cfg = load_net(net)
    compiled = compile_net(cfg, phase, reuse_memory=not no_reuse, gpu=gpu)
    _echo(format_plan(compiled))
    if compiled.backward:
        forward_only = compile_net(cfg, phase, backward=False, reuse_memory=not no_reuse, gpu=gpu)
        _echo(f"forward only:      activations {human_bytes(forward_only.blob_bytes)}, arena "
              f"{human_bytes(forward_only.arena_bytes)}: the same net and batch without backward")


@main.command("time")
@click.argument("net", type=click.Path(dir_okay=False))
@click.option("--iterations", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--phase", default="TRAIN", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@_device_options(graph=False)
@_user_errors
def time_(net, iterations, phase, device, tf32):
    """Time forward and backward of NET per layer, as `caffe time` does (on a GPU each layer
    is synchronized, so the sum is slower than a graph-replayed iteration of `train`)."""
    from trainnet.netcfg import load_net
    from trainnet.plan import compile_net
    from trainnet.runtime.device import get_device
    from trainnet.runtime.net import Net

    dev = get_device(device, tf32=tf32)
    n = Net(compile_net(load_net(net), phase, gpu=dev.is_gpu), dev, rng=np.random.default_rng(0))
    sync = n.device.synchronize
    steps = list(zip(n.plan.steps, n.ios))
    fwd = {s.name: 0.0 for s, _ in steps}
    bwd = dict(fwd)
    n.forward_backward() if n.plan.backward else n.forward()  # warm up
    t_all = time.perf_counter()
    for _ in range(iterations):
        for s, io in steps:
            t = time.perf_counter()
            s.layer.forward(io, n.device)
            sync()
            fwd[s.name] += time.perf_counter() - t
        if n.plan.backward:
            n.seed_gradients()
            for s, io in n.backward_steps:
                t = time.perf_counter()
                s.layer.backward(io, n.device)
                sync()
                bwd[s.name] += time.perf_counter() - t
    total = time.perf_counter() - t_all
    _echo(f"{'layer':<24}{'forward ms':>12}{'backward ms':>13}")
    for s, _ in steps:
        _echo(f"{s.name:<24}{1e3 * fwd[s.name] / iterations:>12.3f}{1e3 * bwd[s.name] / iterations:>13.3f}")
    _echo(f"average iteration: {1e3 * total / iterations:.3f} ms over {iterations} iterations")


def _preprocess(channel_order, raw_scale, mean_file, mean_value, input_scale, resize, labels):
    """The preprocessing the user states on the command line, or None when they state none."""
    from pydantic import ValidationError

    from trainnet.netcfg.common import Preprocess

    given = {k: v for k, v in dict(channel_order=channel_order, raw_scale=raw_scale,
                                   mean_file=mean_file, input_scale=input_scale,
                                   labels=labels).items() if v is not None}
    try:
        if mean_value:
            given["mean_value"] = [float(v) for v in mean_value.split(",")]
        if resize:
            given["resize"] = [int(v) for v in resize.split(",")]
        return Preprocess.model_validate(given) if given else None
    except (ValueError, ValidationError) as exc:
        raise TrainnetError(f"preprocessing options: {exc}".splitlines()[0]) from None


def _preprocess_options(fn):
    options = [
        click.option("--labels", help="Class names file, one per line (e.g. ilsvrc12/synset_words.txt)."),
        click.option("--resize", metavar="H,W", help="Resize images to H,W before the centre crop."),
        click.option("--input-scale", type=float, help="Multiply the input by this after the mean."),
        click.option("--mean-value", metavar="V[,V...]", help="Mean per channel, in channel order."),
        click.option("--mean-file", help="A mean.binaryproto file."),
        click.option("--raw-scale", type=float, help="Pixel values span [0, RAW_SCALE] (255 for Caffe "
                     "ImageNet models)."),
        click.option("--channel-order", type=click.Choice(["BGR", "RGB", "GRAY"]),
                     help="Channel order the model expects (BGR for Caffe models)."),
    ]
    for option in options:
        fn = option(fn)
    return fn


@main.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--model", help="The net (YAML, prototxt or zoo:NAME) the weights belong to: "
              "required to write a caffemodel; reading one, it checks and fixes blob shapes.")
@_preprocess_options
@_user_errors
def convert(src, dst, model, channel_order, raw_scale, mean_file, mean_value, input_scale, resize,
            labels):
    """Convert SRC to DST, chosen by their suffixes: a net or solver between .prototxt and .yaml,
    weights from .caffemodel to .safetensors or back.  The preprocessing options record how the
    model's inputs are prepared (a converted model never guesses it)."""
    from trainnet.zoo import convert as cv

    pre = _preprocess(channel_order, raw_scale, mean_file, mean_value, input_scale, resize, labels)
    src_path, dst_path = Path(src), Path(dst)
    if not src_path.is_file():
        raise TrainnetError(f"{src}: no such file")
    kinds = {src_path.suffix.lower(), dst_path.suffix.lower()}
    if kinds & {".caffemodel", ".safetensors"}:
        done = cv.convert_weights(src_path, dst_path, model=model, preprocess=pre)
    else:
        done = cv.convert_config(src_path, dst_path, preprocess=pre)
    _echo(f"Wrote {dst} ({done.kind})")
    for note in done.notes:
        _echo(f"Note: {note}")


@main.command()
@click.option("--model", required=True, help="A deploy net (YAML, prototxt or zoo:NAME) with a "
              "preprocess record.")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="Weights (safetensors or caffemodel).")
@click.option("--labels", help="Class names file (default: the model's preprocess.labels).")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_device_options(graph=False)
@_user_errors
def classify(model, weights, labels, top, images, device, tf32):
    """Print the TOP most probable classes of each of IMAGES."""
    from trainnet.netcfg import load_net
    from trainnet.runtime.device import get_device
    from trainnet.zoo.classify import classify as run

    results = run(load_net(model), Path(weights), [Path(i) for i in images],
                  get_device(device, tf32=tf32), top=top, labels=labels)
    for image, best in zip(images, results):
        _echo(image)
        for prob, index, name in best:
            _echo(f"  {prob:.4f}  {index:>5}  {name}")


@main.group()
def data():
    """Fetch datasets."""


@data.command("mnist")
@click.option("--dest", type=click.Path(file_okay=False),
              help="Data root (default: $TRAINNET_DATA, else ./data); files go to DEST/mnist.")
@click.option("--mirror", default=None, help="Base URL to download from.")
@_user_errors
def data_mnist(dest, mirror):
    """Download MNIST and verify its checksums."""
    from trainnet.data.download import DEFAULT_MIRROR, download_mnist

    from trainnet.data.paths import DEFAULT_ROOT

    root = Path(dest or os.environ.get("TRAINNET_DATA") or DEFAULT_ROOT)
    paths = download_mnist(root / "mnist", mirror=mirror or DEFAULT_MIRROR, log=_echo)
    _echo(f"MNIST is in {root / 'mnist'} ({len(paths)} files verified)")
    if dest and not os.environ.get("TRAINNET_DATA"):
        _echo(f"Set TRAINNET_DATA={root.resolve()} so configs find it.")


@main.group()
def zoo():
    """The model zoo: classic Caffe nets as editable YAML configs.  Give zoo:NAME wherever a
    net path goes (trainnet plan zoo:lenet, a solver's net: zoo:lenet)."""


@zoo.command("list")
@_user_errors
def zoo_list():
    """One line per zoo net: name, learned parameters, input shape, description."""
    from trainnet.zoo.registry import info, names

    for name in names():
        z = info(name)
        shape = "x".join(str(d) for d in z.input_shape)
        _echo(f"{name:<17}{z.params:>13,}  {shape:<14}{z.description}")


@zoo.command("show")
@click.argument("name")
@click.option("--plan", "as_plan", is_flag=True, help="Print the compiled plan instead of the YAML.")
@click.option("--phase", default="TEST", show_default=True, type=click.Choice(["TRAIN", "TEST"]),
              help="The phase to compile for (with --plan).")
@_user_errors
def zoo_show(name, as_plan, phase):
    """Print zoo net NAME's YAML config (redirect it to a file to edit it), or its compiled plan."""
    from trainnet.zoo.registry import net_path

    path = net_path(name)
    if not as_plan:
        click.echo(path.read_text(), nl=False)
        return
    from trainnet.netcfg import load_net
    from trainnet.plan import compile_net, format_plan

    _echo(format_plan(compile_net(load_net(path), phase)))


if __name__ == "__main__":
    main()
