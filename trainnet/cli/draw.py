"""`trainnet draw`: a picture of a net (Caffe's draw_net.py), or of its compiled plan."""

from __future__ import annotations

import click

from trainnet.cli.common import compile_for, echo, main, state_options, user_errors


@main.command(epilog="""\b
Example:
  trainnet draw configs/lenet/lenet_train_test.yaml -o lenet.svg
  trainnet draw zoo:googlenet --phase TEST --rankdir TB -o googlenet.png
  trainnet draw zoo:resnet50 --plan -o resnet50-plan.pdf   # splits, fusions, memory
  trainnet draw zoo:lenet -o lenet.dot   # the Graphviz text, to edit or render yourself""")
@click.argument("net", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The picture to write: .svg, .png, .pdf, or .dot for the Graphviz text.")
@click.option("--rankdir", default="LR", show_default=True,
              type=click.Choice(["LR", "TB", "RL", "BT"], case_sensitive=False),
              help="Which way the layers run: left to right, top to bottom ...")
@click.option("--phase", default="TRAIN", show_default=True, type=click.Choice(["TRAIN", "TEST"]))
@click.option("--plan", "as_plan", is_flag=True, help="Draw the compiled plan instead: inserted "
              "splits, in-place and fused steps, and each blob's memory region.")
@state_options
@user_errors
def draw(net, output, rankdir, phase, as_plan, stages, level):
    """Draw NET as a graph: one box per layer coloured by kind, blob shapes on the arrows.

    Graphviz's `dot` lays the picture out when it is installed; else trainnet's own renderer
    does (and says so)."""
    from trainnet.netcfg import load_net
    from trainnet.tools.draw import NET_VIEW, graph_of, picture_format, write_picture

    picture_format(output)  # an unknown suffix fails before any work
    options = {} if as_plan else NET_VIEW
    compiled = compile_for(load_net(net), phase, stages, level, **options)
    note = write_picture(graph_of(compiled, plan=as_plan, rankdir=rankdir.upper()), output)
    what = "plan" if as_plan else "net"
    echo(f"wrote {output}: the {phase} {what} of '{compiled.net_name}', {len(compiled.steps)} steps")
    if note:
        echo(f"note: {note}")
