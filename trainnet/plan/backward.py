"""Pass 4: decide which steps run backward and which bottoms take a gradient (Caffe's rules).

Forward: a blob needs a gradient when the step producing it has a bottom that does, or has a
learnable parameter (``lr_mult != 0``); data layers start nothing.  Backward, from the end: a
step that contributes to no loss needs no backward; ``propagate_down: false`` and a layer's
label bottoms cut the gradient.
"""

from __future__ import annotations

from trainnet.plan.plan import Step


def _lr_mults(step: Step) -> list[float]:
    specs = step.cfg.param
    return [specs[j].lr_mult if j < len(specs) else 1.0 for j in range(len(step.layer.param_blobs()))]


def mark_backward(steps: list[Step], force_backward: bool = False) -> None:
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
    for step in reversed(steps):
        contributes = force_backward or any(w != 0 for w in step.loss_weights) or \
            any(t in under_loss for t in step.tops)
        all_cut = bool(step.tops) and all(t in cut for t in step.tops) and \
            not any(w != 0 for w in step.loss_weights)
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
