"""`trainnet plot`: training curves of one or more runs, from their logs, in one image."""

from __future__ import annotations

import re

import click

from trainnet.cli.common import main, user_errors


def _size(ctx, param, value):
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
    if not m or not (100 <= int(m.group(1)) <= 20000 and 100 <= int(m.group(2)) <= 20000):
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT in pixels (100 to 20000 each), "
                                 "e.g. 1200x900", ctx, param)
    return int(m.group(1)), int(m.group(2))


@main.command(epilog="""\b
Example:
  trainnet plot out/lenet_log.jsonl -o curves.png
  trainnet plot run1/x_log.jsonl run2/x_log.jsonl caffe.log --x seconds -o curves.svg""")
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The image to write: .png, .svg or .pdf.")
@click.option("--x", "x", default="iterations", show_default=True,
              type=click.Choice(["iterations", "seconds"]), help="What the horizontal axis counts.")
@click.option("--smooth", type=click.IntRange(min=1), default=None, metavar="N",
              help="Smooth the training loss with a moving average over N logged points "
              "(default: the smoothed loss the run logged, Caffe's average_loss).")
@click.option("--size", callback=_size, metavar="WxH",
              help="The image size in pixels (default: 1000 wide, as tall as the axes need).")
@user_errors
def plot(logs, output, x, smooth, size):
    """Plot training loss (raw and smoothed), every test output and the learning rate of the
    runs LOGS (trainnet's <snapshot_prefix>_log.jsonl, or Caffe's text log), one colour per
    run, to one image."""
    from trainnet.tools.plot import plot_logs

    for note in plot_logs(list(logs), output, x=x, smooth=smooth, size=size):
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {output}")
