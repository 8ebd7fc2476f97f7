"""Pass 6: fold small layers into the step before them, so that one kernel does the work of two
or three.

First a layer into the producer of its bottom when the producer declares it can do its work
(``fold_layers``, asking ``Layer.folds``: a Scale into the BatchNorm that feeds it): the
BatchNorm step then computes ``gamma * xhat + beta`` itself and its backward gives the Scale's gradients too.
The Scale's blobs stay the Scale's (named after it in weights and snapshots, with its own
lr_mult and decay_mult): the step carries them after the BatchNorm's own
(``Step.param_owners``), and its layer is in the step context's ``folded``.

Then an in-place ReLU (``fuses_as_relu``) into the layer that feeds it when that layer can
apply it (``can_fuse_relu``: Convolution, InnerProduct, BatchNorm with or without a folded Scale): the
producer applies ``max(y, 0)`` in its epilogue (one kernel instead of two on the GPU, one pass
over the top instead of two on the CPU) and, in backward, masks its top gradient with
``top > 0`` before its own backward, which is what the ReLU's backward did on the same memory.
A ReLU is folded only when it runs in place on the producer's only top, has slope 0 and no
loss weight, and nothing reads that top between the two (a reader there would see the value
before the ReLU).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

from trainnet.plan.plan import Step

Fold = Callable[[Step, Step], Optional[Step]]


def fuse_layers(steps: list[Step], keep: frozenset[str] = frozenset()) -> list[Step]:
    """New steps without the folded ones (renumbered), those they fold into carrying them;
    no fold hides a blob in ``keep``."""
    kept = fold_relus(fold_layers(steps, keep))
    return [replace(s, index=i) for i, s in enumerate(kept)]


def _producers(steps: list[Step], fold: Fold) -> list[Step]:
    """Walk ``steps``; ``fold(step, producer)`` returns the step that wrote ``step``'s first
    bottom (``producer``) with ``step`` folded into it, or None to keep ``step``.  ``producer``
    is offered only when nothing read that bottom since it was written."""
    writer: dict[str, int] = {}  # blob -> the index in ``kept`` of the step that wrote it
    read_since_write: dict[str, bool] = {}
    kept: list[Step] = []
    for s in steps:
        b = s.bottoms[0] if s.bottoms else None
        k = writer.get(b) if b is not None and not read_since_write.get(b, True) else None
        merged = fold(s, kept[k]) if k is not None else None
        if merged is not None:
            kept[k] = merged
            for t in s.tops:
                writer[t], read_since_write[t] = k, False
            continue
        for x in s.bottoms:
            read_since_write[x] = True
        for t in s.tops:
            writer[t], read_since_write[t] = len(kept), False
        kept.append(s)
    return kept


def fold_layers(steps: list[Step], keep: frozenset[str] = frozenset()) -> list[Step]:
    """A step its producer ``folds`` (a Scale on a BatchNorm's only top) becomes part of the
    producer's step; its top becomes the step's (not when that hides a blob in ``keep``)."""

    def fold(s: Step, producer: Step) -> Optional[Step]:
        if not (len(producer.tops) == 1 and (producer.tops == s.tops or producer.tops[0] not in keep) and not producer.fused and not producer.ctx.fused_relu
                and not any(producer.loss_weights) and not any(s.loss_weights)
                and producer.layer.folds(s.layer)):
            return None
        # the folded layer may learn where the producer passes no gradient on (after the data)
        need = producer.need_backward or s.need_backward
        ctx = replace(producer.ctx, forward_only=not need, folded=producer.ctx.folded + (s.layer,))
        return replace(producer, fused=producer.fused + [s.name], absorbed=producer.absorbed + [s],
                       tops=list(s.tops), need_backward=need, ctx=ctx)

    return _producers(steps, fold)


def fold_relus(steps: list[Step]) -> list[Step]:
    """An in-place slope-0 ReLU becomes its producer's epilogue."""

    def fold(s: Step, producer: Step) -> Optional[Step]:
        if not (s.layer.fuses_as_relu and s.tops == s.bottoms and not any(s.loss_weights)
                and producer.layer.can_fuse_relu and len(producer.tops) == 1
                and not producer.ctx.fused_relu and producer.need_backward == s.need_backward):
            return None
        return replace(producer, fused=producer.fused + [s.name],
                       ctx=replace(producer.ctx, fused_relu=True))

    return _producers(steps, fold)
