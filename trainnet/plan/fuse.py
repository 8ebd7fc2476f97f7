"""Pass 6: fold an in-place ReLU into the Convolution or InnerProduct that feeds it.

The producer then applies ``max(y, 0)`` in its bias epilogue (one kernel instead of two on
the GPU, one pass over the top instead of two on the CPU) and, in backward, masks its top
gradient with ``top > 0`` before its own backward, which is what the ReLU's backward did on
the same memory.  A ReLU is folded only when it runs in place on the producer's only top,
has slope 0 and no loss weight, and nothing reads that top between the two (a reader there
would see the value before the ReLU).
"""

from __future__ import annotations

from trainnet.plan.plan import Step


def fuse_layers(steps: list[Step]) -> list[Step]:
    """Returns the steps without the folded ReLUs (renumbered); marks their producers."""
    writer: dict[str, Step] = {}
    read_since_write: dict[str, bool] = {}
    kept: list[Step] = []
    for s in steps:
        producer = writer.get(s.bottoms[0]) if s.bottoms else None
        if (s.type == "ReLU" and s.tops == s.bottoms and s.layer.p.negative_slope == 0
                and not any(s.loss_weights) and producer is not None
                and producer.layer.can_fuse_relu and len(producer.tops) == 1
                and not producer.fused and not read_since_write[s.bottoms[0]]
                and producer.need_backward == s.need_backward):
            producer.layer.fused_relu = True
            producer.fused.append(s.name)
            continue
        for b in s.bottoms:
            read_since_write[b] = True
        for t in s.tops:
            writer[t], read_since_write[t] = s, False
        kept.append(s)
    for i, s in enumerate(kept):
        s.index = i
    return kept
