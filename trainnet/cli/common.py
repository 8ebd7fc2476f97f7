"""What every command shares: the group, one-line user errors, output, device options."""

from __future__ import annotations

import functools
import sys

import click

from trainnet.errors import TrainnetError


def user_errors(fn):
    """A user's mistake ends in one line on stderr (one per error when a file has several) and
    exit status 1, never a traceback; Ctrl-C outside training's own handling is one line and
    exit status 130.  Memory the machine cannot give is one line too: a Net checks its plan
    against the free memory first, so this is what slips past that check."""

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
        except MemoryError as exc:  # NumPy's, or CuPy's OutOfMemoryError (derived from it)
            detail = " ".join(str(exc).split()) or "an allocation failed"
            click.echo(f"error: out of memory: {detail}", err=True)
            sys.exit(1)

    return wrapper


class UsageLine(click.UsageError):
    """A usage mistake shown as the one line every other error is: ``error: trainnet train:
    No such option: --foo (trainnet train --help for usage)``, exit status 2."""

    def __init__(self, original: click.UsageError):
        super().__init__(original.format_message(), original.ctx)

    def show(self, file=None) -> None:
        path = self.ctx.command_path if self.ctx is not None else "trainnet"
        message = " ".join(self.format_message().split())
        click.echo(f"error: {path}: {message} ({path} --help for usage)", err=True)


# A group run without a command shows its help (click raises this as a usage error).
_SHOW_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line(exc: click.UsageError) -> click.UsageError:
    return exc if isinstance(exc, (UsageLine, _SHOW_HELP)) else UsageLine(exc)


class Group(click.Group):
    """The command group: click's usage errors (unknown option or command, missing argument,
    bad choice), raised while parsing any command or subgroup below it, become ``UsageLine``."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None


def echo(line: str) -> None:
    click.echo(line)


@click.group(cls=Group, epilog="""\b
Example:
  trainnet train configs/lenet/lenet_solver.yaml
  trainnet train --help    # each command's options and examples""")
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
