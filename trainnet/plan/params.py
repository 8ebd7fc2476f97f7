"""Pass 6: lay the learnable blobs out in one flat arena.

Blobs that share a ParamSpec ``name`` get one slot (the first user owns it); every other
user reads the owner's data and writes its gradient to a shadow region that the Net adds
into the owner's gradient, so the diff, history and update keep the data's layout.
"""

from __future__ import annotations

import math

from trainnet.layers.fillers import check as check_filler
from trainnet.netcfg.common import ParamSpec
from trainnet.plan.plan import ParamSlot, ParamUse, Step

ALIGN_ELEMS = 16  # 64 bytes of float32


def aligned(n: int) -> int:
    return (n + ALIGN_ELEMS - 1) // ALIGN_ELEMS * ALIGN_ELEMS


def layout_params(steps: list[Step], file: str | None) -> tuple[list[ParamSlot], int, int]:
    slots: list[ParamSlot] = []
    by_name: dict[str, int] = {}
    offset = shadow = 0
    for step in steps:
        uses = []
        for j, blob in enumerate(step.layer.param_blobs()):
            spec = step.cfg.param[j] if j < len(step.cfg.param) else ParamSpec()
            frozen = step.frozen[j]
            if spec.name and spec.name in by_name:
                owner = slots[by_name[spec.name]]
                same = owner.shape == blob.shape if spec.share_mode == "STRICT" else \
                    owner.count == math.prod(blob.shape)
                if not same:
                    raise step.cfg.error(f"shares parameter '{spec.name}' of shape {owner.shape} "
                                         f"from layer '{owner.key[0]}' but needs {blob.shape}", file, "param")
                for mult in ("lr_mult", "decay_mult"):
                    if getattr(spec, mult) != getattr(owner, mult):
                        raise step.cfg.error(
                            f"shares parameter '{spec.name}' with layer '{owner.key[0]}' but its "
                            f"{mult} {getattr(spec, mult):g} differs from {getattr(owner, mult):g} "
                            "there (Caffe refuses this too)", file, "param")
                uses.append(ParamUse(by_name[spec.name], frozen, None if frozen else shadow))
                if not frozen:
                    shadow += aligned(owner.count)
                continue
            problem = check_filler(blob.filler, tuple(blob.shape))
            if problem:
                raise step.cfg.error(f"parameter {j}: {problem}", file)
            slot = ParamSlot((step.name, j), tuple(blob.shape), offset, spec.lr_mult, spec.decay_mult,
                             blob.filler)
            if spec.name:
                by_name[spec.name] = len(slots)
            uses.append(ParamUse(len(slots), frozen))
            slots.append(slot)
            offset += aligned(slot.count)
        step.params = uses
    return slots, offset, shadow
