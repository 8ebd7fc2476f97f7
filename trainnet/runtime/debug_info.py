"""Caffe's debug_info figures: the mean absolute value (asum / count) of each blob a pass writes.

A reuse-packed plan lets a later step write over a blob whose value is dead, so a figure is
taken right after the step that wrote the blob, by an observer of the Net's passes
(``PassFigures``), never from the arena after the pass.  The observer runs only in a pass the
caller runs eagerly, step by step, for that purpose (a display iteration, the search for a first
non-finite blob): the iterations in between, captured as CUDA graphs or not, never see it.
"""

from __future__ import annotations

import math
from typing import Optional

class NonFiniteBlob(Exception):
    """Raised by a PassFigures that stops at the first figure that is not finite."""


def mean_abs(device, array) -> float:
    """asum / count in float64, as a host float (waits for a GPU); non-finite iff an element is."""
    if array.size == 0:
        return 0.0
    xp = device.xp
    return float(xp.abs(array).sum(dtype=xp.float64)) / array.size


def sum_squares(device, array) -> float:
    xp = device.xp
    flat = array.reshape(-1).astype(xp.float64)
    return float(xp.dot(flat, flat))


def _named(configured: list[str], planned: list[str]) -> list[str]:
    """Blobs by the names the config gives them (the compiler renames the top of a step it runs
    in place after the bottom: Caffe's lines name the config's blob)."""
    return list(configured) if len(configured) == len(planned) else planned


class PassFigures:
    """An observer of a Net's passes (``Net.forward_device(observe)``) collecting Caffe's
    [Forward] (each top's data, then each parameter's data) and [Backward] (each bottom's diff
    that is propagated, then each learned parameter's diff) figures of every step as it runs.
    With ``stop_at_nonfinite`` it raises NonFiniteBlob at the first top or gradient that is not
    finite, ``nonfinite`` saying which (a parameter's data is checked apart, before the pass)."""

    def __init__(self, net, stop_at_nonfinite: bool = False, passes: int = 1):
        self.net = net
        self.stop = stop_at_nonfinite
        self.forward: list[dict] = []
        self.backward: list[dict] = []
        self.update: list[dict] = []
        self.norms: list[dict[str, list[float]]] = []  # one per pass, as Caffe's Backward logs
        self.nonfinite: Optional[str] = None
        # with several passes per iteration (iter_size) each figure says its pass ("pass": k)
        self.passes, self.pass_index = passes, 0

    def __call__(self, step, io, direction: str) -> None:
        device, layer = self.net.device, step.name
        if direction == "forward":
            for name, top in zip(_named(step.cfg.top, step.tops), io.top):
                self._add(self.forward, {"layer": layer, "top": name, "data": mean_abs(device, top)},
                          f"layer '{layer}' ({step.type}) forward: its top '{name}' is not finite")
            for i, weights in enumerate(io.params):
                self._add(self.forward, {"layer": layer, "param": i,
                                         "data": mean_abs(device, weights)}, "")
            return
        for name, grad in zip(_named(step.cfg.bottom, step.bottoms), io.bottom_diff):
            if grad is not None:
                self._add(self.backward, {"layer": layer, "bottom": name,
                                          "diff": mean_abs(device, grad)},
                          f"layer '{layer}' ({step.type}) backward: the gradient of its bottom "
                          f"'{name}' is not finite")
        for i, grad in enumerate(io.param_diff):
            if grad is not None:
                self._add(self.backward, {"layer": layer, "param": i, "diff": mean_abs(device, grad)},
                          f"layer '{layer}' ({step.type}) backward: the gradient of its parameter "
                          f"blob {i} is not finite")

    def _add(self, into: list[dict], figure: dict, problem: str) -> None:
        """Keep ``figure``; stop at a non-finite one when asked and ``problem`` names it."""
        if self.passes > 1:
            figure["pass"] = self.pass_index
        into.append(figure)
        value = figure.get("data", figure.get("diff"))
        if self.stop and problem and not math.isfinite(value):
            self.nonfinite = problem
            raise NonFiniteBlob(problem)

    def take_norms(self, grads) -> None:
        """Caffe's "All net params (data, diff)" L1 and L2 norms, over the parameter arena and
        ``grads`` (the gradient summed so far, in the arena's layout), at the end of a pass's
        backward as Caffe's Net::Backward takes them (iter_size: once per pass)."""
        device, data = self.net.device, self.net.params.data
        n = max(data.size, 1)
        self.norms.append({"l1": [mean_abs(device, data) * n, mean_abs(device, grads) * n],
                           "l2": [math.sqrt(sum_squares(device, data)),
                                  math.sqrt(sum_squares(device, grads))]})

    def before_update(self) -> None:
        """Each parameter's data before the update (Caffe's [Update] figures are taken then)."""
        store, device = self.net.params, self.net.device
        self.update = []
        for i, slot in enumerate(store.slots):
            layer, index = slot.key
            self.update.append({"layer": layer, "param": index,
                                "data": mean_abs(device, store.view(store.data, i))})

    def after_update(self) -> None:
        """Each parameter's update step (the update rule leaves it in the gradient arena)."""
        store, device = self.net.params, self.net.device
        for i, figure in enumerate(self.update):
            figure["diff"] = mean_abs(device, store.view(store.diff, i))

    def record(self) -> dict:
        """The figures as the JSON log's fields."""
        out = {"forward": self.forward, "backward": self.backward}
        if self.norms:  # the iteration's (its last pass's); with iter_size, each pass's too
            out["norms"] = self.norms[-1]
            if self.passes > 1:
                out["pass_norms"] = self.norms
        if self.update:
            out["update"] = self.update
        return out
