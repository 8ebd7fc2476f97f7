"""Seeing what training does: Caffe's debug_info lines, the divergence report that carries them,
and the warning of a loss that explodes while it is still finite.

debug_info's figures are taken only at display iterations: that iteration's passes run eagerly,
step by step, with a ``PassFigures`` observer reading each blob right after the step that wrote
it (so a reuse-packed plan's later steps cannot have written over it yet); every other iteration
runs as before (a captured CUDA graph on a GPU) and reads nothing.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from trainnet.runtime import locate
from trainnet.runtime.debug_info import PassFigures
from trainnet.solver.testing import Diverged

EXPLOSION_WARM_UP = 10     # iterations before a loss is compared with its running average
EXPLOSION_DECAY = 0.99     # the running average's memory (about 100 iterations)


def _g(value: float) -> str:
    """A number as Caffe's LOG prints a float (six significant digits)."""
    return f"{value:.6g}"


def lines(record: dict) -> list[str]:
    """Caffe's debug_info lines for ``PassFigures.record()``, in Caffe's order: ``pass_lines``
    (logged before the iteration's display line), then ``update_lines`` (after it)."""
    return pass_lines(record) + update_lines(record)


def pass_lines(record: dict) -> list[str]:
    """What Caffe's ForwardBackward logs, pass by pass (iter_size): [Forward] in plan order,
    [Backward] in backward order, then the parameters' norms at the end of the backward."""
    out = []
    forward, backward = record.get("forward", []), record.get("backward", [])
    passes = sorted({f.get("pass", 0) for f in forward + backward})
    norms = record.get("pass_norms") or ([record["norms"]] if record.get("norms") else [])
    for k in passes:
        for f in forward:
            if f.get("pass", 0) == k:
                blob = f"top blob {f['top']}" if "top" in f else f"param blob {f['param']}"
                out.append(f"    [Forward] Layer {f['layer']}, {blob} data: {_g(f['data'])}")
        for f in backward:
            if f.get("pass", 0) == k:
                blob = f"bottom blob {f['bottom']}" if "bottom" in f else f"param blob {f['param']}"
                out.append(f"    [Backward] Layer {f['layer']}, {blob} diff: {_g(f['diff'])}")
        at = k - (len(passes) - len(norms))  # a single norms entry goes with the last pass
        if 0 <= at < len(norms):
            (l1_data, l1_diff), (l2_data, l2_diff) = norms[at]["l1"], norms[at]["l2"]
            out.append(f"    [Backward] All net params (data, diff): L1 norm = ({_g(l1_data)}, "
                       f"{_g(l1_diff)}); L2 norm = ({_g(l2_data)}, {_g(l2_diff)})")
    return out


def update_lines(record: dict) -> list[str]:
    """What Caffe's update logs, after the display line: [Update] in the parameter arena's order."""
    return [f"    [Update] Layer {f['layer']}, param {f['param']} data: {_g(f['data'])}; "
            f"diff: {_g(f.get('diff', math.nan))}" for f in record.get("update", ())]


def due(solver, it: int) -> Optional[PassFigures]:
    """A fresh observer when iteration ``it`` shows debug_info (a display iteration), else None."""
    cfg = solver.cfg
    if cfg.debug_info and cfg.display and it % cfg.display == 0:
        return PassFigures(solver.net, passes=cfg.iter_size)
    return None


def report_passes(solver, figures: PassFigures) -> None:
    """Log the iteration's [Forward] and [Backward] lines (before its display line, as Caffe)."""
    for line in pass_lines(figures.record()):
        solver.log(line)


def report_update(solver, it: int, figures: PassFigures) -> None:
    """Log the iteration's [Update] lines (after its display line, as Caffe) and write all its
    figures to the JSON log as one record."""
    record = figures.record()
    for line in update_lines(record):
        solver.log(line)
    solver.record(event="debug_info", iter=it, **record)


def diverged(solver, it: int, loss: float, marked) -> None:
    """Stop on a non-finite loss or gradient, before the update: re-run the iteration's first
    pass step by step to say where it went non-finite (with debug_info's figures up to there),
    then snapshot the state it started from (weights and history untouched, the data readers
    rewound), and raise Diverged."""
    what = f"the loss is {loss}" if not np.isfinite(loss) else "a gradient is not finite"
    spoiled = locate.nonfinite_weights(solver.net)
    if spoiled:  # the previous update overflowed: no good state is left in memory
        raise Diverged(f"iteration {it}: {what} (diverged): {spoiled}, made so by the update "
                       f"of iteration {it - 1}; no snapshot written (the newest one on disk "
                       "is the last good state): lower base_lr or set clip_gradients")
    states, rng_state = marked
    locate.rewind(solver.net, states)
    solver.rng.bit_generator.state = rng_state
    where, figures = locate.locate_with_figures(solver.net, backward=True)
    locate.rewind(solver.net, states)
    solver.rng.bit_generator.state = rng_state
    record = figures.record()
    table = lines(record)
    if table:  # the error stays one line: the table goes to the log just above it
        solver.log(f"Iteration {it}, debug_info of the pass up to the first non-finite blob:")
        for line in table:
            solver.log(line)
    solver.record(event="debug_info", iter=it, diverged=True, nonfinite=where, **record)
    saved = solver.snapshot()
    error = Diverged(f"iteration {it}: {what} (diverged); first non-finite: "
                     f"{where or 'not found again on a re-run'}"
                     + ("; each layer's figures up to it are logged above" if table else "")
                     + f"; the state before this iteration is saved as {saved}: lower base_lr (or "
                     "set clip_gradients) or check the data, then resume from it")
    error.table = table
    raise error


class ExplosionWatch:
    """Warns once of a finite loss above ``factor`` times its running average (a mean over the
    first iterations, then an exponential average over about the last hundred), once
    EXPLOSION_WARM_UP losses are in; factor 0 watches nothing."""

    def __init__(self, factor: float):
        self.factor = factor
        self.weighted = self.weights = 0.0
        self.seen = 0
        self.warned = False

    def seed(self, losses, trained: int) -> None:
        """Start from a resumed run's smoothed-loss window (``losses``, the newest last) after
        ``trained`` iterations, instead of blind for the first EXPLOSION_WARM_UP iterations: the
        running average is the window's, and the warm-up counts the iterations trained when the
        window holds any.  An empty window (a Caffe state, say) leaves the watch as it is."""
        finite = [float(v) for v in losses if math.isfinite(v)]
        if not finite:
            return
        self.weighted = self.weights = 0.0
        for value in finite:
            self.weighted = EXPLOSION_DECAY * self.weighted + value
            self.weights = EXPLOSION_DECAY * self.weights + 1.0
        self.seen = max(trained, len(finite))

    def check(self, loss: float) -> Optional[float]:
        """Take ``loss``; returns the running average it explodes from, the first time only."""
        if not self.factor or not math.isfinite(loss):
            return None
        average = self.weighted / self.weights if self.weights else 0.0
        exploded = (not self.warned and self.seen >= EXPLOSION_WARM_UP and average > 0
                    and loss > self.factor * average)
        self.weighted = EXPLOSION_DECAY * self.weighted + loss
        self.weights = EXPLOSION_DECAY * self.weights + 1.0
        self.seen += 1
        if exploded:
            self.warned = True
            return average
        return None


def watch_loss(solver, it: int, loss: float) -> None:
    """The explosion warning: one log line and one JSON record, the first time only."""
    average = solver.explosion.check(loss)
    if average is not None:
        factor = solver.cfg.loss_explosion_factor
        solver.log(f"Iteration {it}: Warning: the loss {loss:.6g} is over {factor:g} times its "
                   f"running average {average:.6g} (loss_explosion_factor): training may be "
                   "diverging; lower base_lr or set clip_gradients (debug_info: true shows each "
                   "layer's figures)")
        solver.record(event="loss_explosion", iter=it, loss=loss, average=average, factor=factor)
