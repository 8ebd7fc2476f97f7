"""What every command shares: the group, one-line user errors, output, device options."""

from __future__ import annotations

import functools
import sys

import click

from trainnet.errors import TrainnetError


def user_errors(fn):
    """A user's mistake ends in one line on stderr (one per error when a file has several) and
    exit status 1, never a traceback; Ctrl-C outside training's own handling is one line and
    exit status 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrainnetError as exc:
            for line in str(exc).splitlines() or [""]:  # several located errors: one line each
                click.echo(f"error: {line}", err=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:
            why = f" ({exc.args[0]})" if exc.args else ""
            click.echo(f"error: interrupted{why}", err=True)
            sys.exit(130)

    return wrapper


def echo(line: str) -> None:
    click.echo(line)


@click.group()
@click.version_option(package_name="trainnet")
def main():
    """trainnet: train and test Caffe-style nets described in YAML config files."""


def device_options(graph: bool):
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
