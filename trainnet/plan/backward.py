"""Pass 4: decide which steps run backward and which bottoms take a gradient (Caffe's rules).

Forward: a blob needs a gradient when the step producing it has a bottom that does, or has a
learnable parameter (``lr_mult != 0``; a blob the layer does not learn, such as BatchNorm's
statistics, counts as ``lr_mult: 0``); data layers start nothing.  Backward, from the end: a
step that contributes to no loss needs no backward; ``propagate_down: false`` and a layer's
label bottoms cut the gradient.
"""

from __future__ import annotations

from trainnet.plan.plan import Step


def _lr_mults(step: Step) -> list[float]:
    specs = step.cfg.param
    return [0.0 if not blob.learned else specs[j].lr_mult if j < len(specs) else 1.0
            for j, blob in enumerate(step.layer.param_blobs())]


def mark_backward(steps: list[Step], force_backward: bool = False,
                  file: str | None = None) -> None:
    needs_grad: dict[str, bool] = {}
    for step in steps:
        layer = step.layer
        allowed = step.cfg.propagate_down or [True] * len(step.bottoms)
        step.propagate_down = [
            bool(allowed[j] and layer.has_backward and j not in layer.no_grad_bottoms
                 and (needs_grad.get(b, False) or force_backward))
            for j, b in enumerate(step.bottoms)]
        learnable = any(m != 0 for m in _lr_mults(step))
        step.need_backward = layer.has_backward and not layer.is_data and (
            any(step.propagate_down) or learnable or force_backward)
        for t in step.tops:
            needs_grad[t] = step.need_backward

    # From the end: only what feeds a loss, and whose gradient someone propagates, runs backward.
    under_loss: set[str] = set()
    cut: set[str] = set()  # blobs whose consumer takes no gradient for them
    wanted: set[str] = set()  # blobs a loss would take a gradient for, as configured
    for step in reversed(steps):
        contributes = force_backward or any(w != 0 for w in step.loss_weights) or \
            any(t in under_loss for t in step.tops)
        all_cut = bool(step.tops) and all(t in cut for t in step.tops) and \
            not any(w != 0 for w in step.loss_weights)
        if not force_backward:
            _refuse_missing_backward(step, needs_grad, wanted, file)
        if not contributes or all_cut:
            step.need_backward = False
        if not step.need_backward:
            step.propagate_down = [False] * len(step.bottoms)
        for j, b in enumerate(step.bottoms):
            if contributes:
                under_loss.add(b)
            if not step.propagate_down[j]:
                cut.add(b)
    for step in steps:
        step.frozen = [not step.need_backward or m == 0 for m in _lr_mults(step)]


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
