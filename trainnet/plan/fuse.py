"""Pass 6: fold small layers into the step before them, so that one kernel does the work of two
or three.

First a Scale into the BatchNorm that feeds it (``fold_scales``): the BatchNorm step then
computes ``gamma * xhat + beta`` itself and its backward gives the Scale's gradients too.
The Scale's blobs stay the Scale's (named after it in weights and snapshots, with its own
lr_mult and decay_mult): the step carries them after the BatchNorm's own
(``Step.param_owners``).

Then an in-place ReLU into the layer that feeds it when that layer can apply it
(``can_fuse_relu``: Convolution, InnerProduct, BatchNorm with or without a folded Scale): the
producer applies ``max(y, 0)`` in its epilogue (one kernel instead of two on the GPU, one pass
over the top instead of two on the CPU) and, in backward, masks its top gradient with
``top > 0`` before its own backward, which is what the ReLU's backward did on the same memory.
A ReLU is folded only when it runs in place on the producer's only top, has slope 0 and no
loss weight, and nothing reads that top between the two (a reader there would see the value
before the ReLU).
"""

from __future__ import annotations

from trainnet.plan.plan import Step


def fuse_layers(steps: list[Step]) -> list[Step]:
    """Returns the steps without the folded ones (renumbered); marks the steps they fold into."""
    kept = fold_relus(fold_scales(steps))
    for i, s in enumerate(kept):
        s.index = i
    return kept


def _producers(steps: list[Step], foldable) -> list[Step]:
    """Walk ``steps``; ``foldable(step, producer)`` folds ``step`` into the step that wrote its
    first bottom (``producer``, None if none) and returns True, or returns False to keep it.
    ``producer`` is offered only when nothing read that bottom since it was written."""
    writer: dict[str, Step] = {}
    read_since_write: dict[str, bool] = {}
    kept: list[Step] = []
    for s in steps:
        b = s.bottoms[0] if s.bottoms else None
        producer = writer.get(b) if b is not None and not read_since_write.get(b, True) else None
        if producer is not None and foldable(s, producer):
            for t in s.tops:
                writer[t], read_since_write[t] = producer, False
            continue
        for x in s.bottoms:
            read_since_write[x] = True
        for t in s.tops:
            writer[t], read_since_write[t] = s, False
        kept.append(s)
    return kept


def fold_scales(steps: list[Step]) -> list[Step]:
    """A Scale with one bottom (a learned per-channel gamma, beta) on a BatchNorm's only top
    becomes part of the BatchNorm step; its top becomes the step's."""

    def foldable(s: Step, bn: Step) -> bool:
        if not (s.type == "Scale" and len(s.bottoms) == 1 and bn.type == "BatchNorm"
                and len(bn.tops) == 1 and not bn.fused and not bn.layer.fused_relu
                and not any(bn.loss_weights) and not any(s.loss_weights) and bn.layer.folds(s.layer)):
            return False
        bn.layer.fold_scale(s.layer)
        bn.fused.append(s.name)
        bn.absorbed.append(s)
        bn.tops = list(s.tops)
        # the Scale may learn where the BatchNorm passes no gradient on (right after the data)
        bn.need_backward = bn.need_backward or s.need_backward
        bn.layer.forward_only = not bn.need_backward
        return True

    return _producers(steps, foldable)


def fold_relus(steps: list[Step]) -> list[Step]:
    """An in-place slope-0 ReLU becomes its producer's epilogue."""

    def foldable(s: Step, producer: Step) -> bool:
        if not (s.type == "ReLU" and s.tops == s.bottoms and s.layer.p.negative_slope == 0
                and not any(s.loss_weights) and producer.layer.can_fuse_relu
                and len(producer.tops) == 1 and not producer.layer.fused_relu
                and producer.need_backward == s.need_backward):
            return False
        producer.layer.fused_relu = True
        producer.fused.append(s.name)
        return True

    return _producers(steps, foldable)
