"""Training curves of one or more runs in one figure (`trainnet plot`): Caffe's
plot_training_log.py, with every run in its own colour and every quantity on its own axes.

Top to bottom: the training loss (each logged iteration faint, smoothed solid), one axes per
test output name (accuracy, loss ...; test net #1 and on dashed, dotted ...), and the learning
rate on a small log-scale axes; all against iterations or seconds.  matplotlib draws on its Agg
canvas (no display), and the image is written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.tools.plot_log import RunLog, finite, moving_average, read_log

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
X_AXES = ("iterations", "seconds")
NET_STYLES = ("-", "--", ":", "-.")
DPI = 100
WIDTH = 1000  # pixels, by default; the height grows with the number of axes


def image_format(path: Path) -> str:
    """The image format an output's suffix names; an unknown one is a user error."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        known = ", ".join(FORMATS)
        raise TrainnetError(f"{path}: unknown image type {Path(path).suffix or '(no suffix)'!r}: "
                            f"name the output with one of {known}")
    return fmt


def _figure_class():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise TrainnetError('plotting needs matplotlib, which is not installed: '
                            'pip install "trainnet[plot]"') from None
    return Figure, FigureCanvasAgg


def run_labels(paths: list[Path]) -> list[str]:
    """Each run's label: its file name, or the path as given where two names are the same."""
    names = [Path(p).name for p in paths]
    return [name if names.count(name) == 1 else str(p) for name, p in zip(names, paths)]


def plot_logs(logs: list[Path], output: Path, x: str = "iterations", smooth: int | None = None,
              size: tuple[int, int] | None = None) -> list[str]:
    """Plot the runs ``logs`` to ``output`` (.png, .svg or .pdf); returns notes for the user
    (a log's cut-off last line).  ``smooth``: a moving average over that many logged points
    instead of the log's own smoothed loss; ``size``: (width, height) in pixels."""
    if x not in X_AXES:
        raise TrainnetError(f"--x {x}: plot against one of {', '.join(X_AXES)}")
    fmt = image_format(output)
    figure, canvas = _figure_class()
    runs = [read_log(path) for path in logs]
    if x == "seconds":
        for run in runs:
            if not run.has_seconds():
                raise TrainnetError(f"{run.path}: the log has no times to plot against seconds; "
                                    "plot against iterations (--x iterations)")
    panels = _panels(runs)
    width, height = size or (WIDTH, int(110 * sum(ratio for _, ratio in panels)) + 120)
    fig = figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    canvas(fig)
    _draw(fig, runs, run_labels(logs), panels, x, smooth)
    from matplotlib import rc_context
    buffer = io.BytesIO()
    with rc_context({"svg.fonttype": "none"}):  # SVG text stays text: searchable, selectable
        fig.savefig(buffer, format=fmt, dpi=DPI)
    atomic_write(Path(output), buffer.getvalue())
    return [note for run in runs for note in run.notes]


def _panels(runs: list[RunLog]) -> list[tuple[str, float]]:
    """(what, height ratio) of each axes, top to bottom: loss, test outputs by name, lr."""
    outputs = sorted({name for run in runs for _, name in run.tests})
    panels = [("loss", 3.0)] + [(f"test:{name}", 2.0) for name in outputs]
    if any(finite(run.train_series("lr")) for run in runs):
        panels.append(("lr", 1.2))
    return panels


def _draw(fig, runs: list[RunLog], labels: list[str], panels, x: str, smooth: int | None) -> None:
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [ratio for _, ratio in panels]})[:, 0]
    where = {what: ax for (what, _), ax in zip(panels, axes)}
    nets = set()
    for i, (run, label) in enumerate(zip(runs, labels)):
        colour = f"C{i % 10}"
        xs = run.iterations() if x == "iterations" else run.train_series("seconds")
        raw = run.train_series("loss")
        smoothed = moving_average(raw, smooth) if smooth else run.train_series("smoothed")
        where["loss"].plot(xs, raw, color=colour, alpha=0.3, linewidth=0.8)
        where["loss"].plot(xs, smoothed, color=colour, linewidth=1.6, label=label)
        for net, name in sorted(run.tests):
            its, values = run.test_series(net, name)
            at = its if x == "iterations" else run.seconds_at(its)
            where[f"test:{name}"].plot(at, values, color=colour, marker="o", markersize=3,
                                       linestyle=NET_STYLES[net % len(NET_STYLES)])
            nets.add(net)
        if "lr" in where:
            where["lr"].plot(xs, run.train_series("lr"), color=colour, linewidth=1.2)
    _label(where, x, smooth, sorted(nets))


def _label(where: dict, x: str, smooth: int | None, nets: list[int]) -> None:
    how = f"moving average of {smooth} points" if smooth else "smoothed as logged"
    where["loss"].set_ylabel("training loss")
    where["loss"].set_title(f"training loss: each logged iteration (faint), {how} (solid)",
                            fontsize="medium")
    where["loss"].legend(loc="upper right", fontsize="small")
    for what, ax in where.items():
        ax.grid(True, alpha=0.3)
        if what.startswith("test:"):
            ax.set_ylabel(f"test {what[5:]}")
    if len(nets) > 1 or any(nets):
        first = next(what for what in where if what.startswith("test:"))
        handles = [where[first].plot([], [], color="black", label=f"test net #{net}",
                                     linestyle=NET_STYLES[net % len(NET_STYLES)])[0] for net in nets]
        where[first].legend(handles=handles, loc="best", fontsize="small")
    if "lr" in where:
        lr = where["lr"]
        lr.set_ylabel("learning rate")
        values = np.concatenate([line.get_ydata() for line in lr.get_lines()])
        if np.all(values[np.isfinite(values)] > 0):
            lr.set_yscale("log")
    list(where.values())[-1].set_xlabel("iteration" if x == "iterations" else "seconds")
    where["loss"].figure.align_ylabels(list(where.values()))
