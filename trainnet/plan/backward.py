"""Pass 4: decide which steps run backward and which bottoms take a gradient (Caffe's rules).

Forward: a blob needs a gradient when the step producing it has a bottom that does, or has a
learnable parameter (``lr_mult != 0``; a blob the layer does not learn, such as BatchNorm's
statistics, counts as ``lr_mult: 0``); data layers start nothing.  Backward, from the end: a
step that contributes to no loss needs no backward; ``propagate_down: false`` and a layer's
label bottoms cut the gradient.
"""

from __future__ import annotations

from dataclasses import replace

from trainnet.plan.plan import Step


def _lr_mults(step: Step) -> list[float]:
    specs = step.cfg.param
    return [0.0 if not blob.learned else specs[j].lr_mult if j < len(specs) else 1.0
            for j, blob in enumerate(step.layer.param_blobs())]


def mark_backward(steps: list[Step], force_backward: bool = False,
                  file: str | None = None) -> list[Step]:
    """New steps with ``need_backward``, ``propagate_down`` and ``frozen`` decided."""
    needs_grad: dict[str, bool] = {}
    need: list[bool] = []
    propagate: list[list[bool]] = []
    for step in steps:
        layer = step.layer
        allowed = step.cfg.propagate_down or [True] * len(step.bottoms)
        propagate.append([
            bool(allowed[j] and layer.has_backward and j not in layer.no_grad_bottoms
                 and (needs_grad.get(b, False) or force_backward))
            for j, b in enumerate(step.bottoms)])
        learnable = any(m != 0 for m in _lr_mults(step))
        need.append(layer.has_backward and not layer.is_data and (
            any(propagate[-1]) or learnable or force_backward))
        for t in step.tops:
            needs_grad[t] = need[-1]

    # From the end: only what feeds a loss, and whose gradient someone propagates, runs backward.
    under_loss: set[str] = set()
    cut: set[str] = set()  # blobs whose consumer takes no gradient for them
    wanted: set[str] = set()  # blobs a loss would take a gradient for, as configured
    for i in reversed(range(len(steps))):
        step = steps[i]
        contributes = force_backward or any(w != 0 for w in step.loss_weights) or \
            any(t in under_loss for t in step.tops)
        all_cut = bool(step.tops) and all(t in cut for t in step.tops) and \
            not any(w != 0 for w in step.loss_weights)
        if not force_backward:
            _refuse_missing_backward(step, needs_grad, wanted, file)
        if not contributes or all_cut:
            need[i] = False
        if not need[i]:
            propagate[i] = [False] * len(step.bottoms)
        for j, b in enumerate(step.bottoms):
            if contributes:
                under_loss.add(b)
            if not propagate[i][j]:
                cut.add(b)
    return [replace(s, need_backward=n, propagate_down=down,
                    frozen=[not n or m == 0 for m in _lr_mults(s)])
            for s, n, down in zip(steps, need, propagate)]


def _refuse_missing_backward(step: Step, needs_grad: dict[str, bool], wanted: set[str],
                             file: str | None) -> None:
    """A loss wants a gradient through a layer that has no backward (Threshold, ArgMax) for a
    bottom that needs one: Caffe fails there at the first backward; refuse the net rather than
    cut the gradient silently.  Adds the bottoms this step would pass a gradient to to ``wanted``
    (steps are visited from the end)."""
    layer = step.layer
    if not (any(w != 0 for w in step.loss_weights) or any(t in wanted for t in step.tops)):
        return
    allowed = step.cfg.propagate_down or [True] * len(step.bottoms)
    takes = [b for j, b in enumerate(step.bottoms) if allowed[j] and j not in layer.no_grad_bottoms]
    if layer.has_backward:
        wanted.update(takes)
        return
    for b in takes:
        if not layer.is_data and needs_grad.get(b, False):
            raise step.cfg.error(f"{step.type} has no backward, but the loss needs a gradient "
                                 f"through it to bottom '{b}'; set propagate_down: false on this "
                                 "layer to stop the gradient here", file)
