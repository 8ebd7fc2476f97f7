"""`trainnet plan`: the compiled plan of a net, as training (or trainnet.caffe.Net) runs it."""

from __future__ import annotations

import shutil

import click

from trainnet.cli.common import compile_for, echo, main, state_options, user_errors


def text_width() -> int:
    """The terminal's width ($COLUMNS first), or 100 columns when the output is not a terminal."""
    return shutil.get_terminal_size((100, 24)).columns


@main.command(epilog="""\b
Example:
  trainnet plan zoo:googlenet --phase TEST    # a zoo net, forward only
  trainnet plan configs/lenet/lenet_train_test.yaml --no-reuse
  COLUMNS=200 trainnet plan zoo:resnet50 > plan.txt   # wider lines than 100""")
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
    """Print the compiled plan of NET: shapes, parameters, FLOPs and memory.  Long lines wrap to
    the terminal's width ($COLUMNS; 100 columns when not a terminal)."""
    from trainnet.netcfg import load_net
    from trainnet.plan import format_plan
    from trainnet.plan.text import field_line, has_backward, human_bytes

    width = text_width()
    cfg = load_net(net)
    options = dict(reuse_memory=not no_reuse, gpu=gpu, keep=list(keep))
    if as_python:
        options.update(reuse_memory=False, in_place=False, fuse=False)
    compiled = compile_for(cfg, phase, stages, level, **options)
    echo(format_plan(compiled, width))
    if as_python:
        packed = compile_for(cfg, phase, stages, level, gpu=gpu)
        echo(field_line("packed (trainnet train)", f"arena {human_bytes(packed.arena_bytes)}; "
                        "this plan keeps every blob readable after a pass", width))
    if has_backward(compiled):
        forward_only = compile_for(cfg, phase, stages, level, backward=False, **options)
        echo(field_line("forward only", f"activations {human_bytes(forward_only.blob_bytes)}, "
                        f"arena {human_bytes(forward_only.arena_bytes)}: the same net and batch "
                        "without backward", width))
