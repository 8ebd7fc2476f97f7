"""Pass 7: lay the parameter blobs out in one flat arena.

Blobs that share a ParamSpec ``name`` get one slot (the first user owns it); every other
user reads the owner's data and writes its gradient to a shadow region that the Net adds
into the owner's gradient, so the diff, history and update keep the data's layout.

A step's blobs are its layer's, then those of the steps folded into it (``param_owners``):
each keeps the key, ParamSpec and frozen flag of the layer that declares it.  A blob the
layer does not learn (BatchNorm's statistics) is frozen with lr_mult and decay_mult 0, so the
update leaves it as forward wrote it; a non-zero lr_mult for it is refused, as in Caffe.
"""

from __future__ import annotations

import math
from dataclasses import replace

from trainnet.layers.fillers import check as check_filler
from trainnet.netcfg.common import ParamSpec
from trainnet.plan.plan import ParamSlot, ParamUse, Step

ALIGN_ELEMS = 16  # 64 bytes of float32


def aligned(n: int) -> int:
    return (n + ALIGN_ELEMS - 1) // ALIGN_ELEMS * ALIGN_ELEMS


def layout_params(steps: list[Step],
                  file: str | None) -> tuple[list[Step], list[ParamSlot], int, int]:
    """New steps, each with its ``params`` (its views of the slots); the slots, and the elements
    of the main layout and of the shadow gradients."""
    out: list[Step] = []
    slots: list[ParamSlot] = []
    by_name: dict[str, int] = {}
    offset = shadow = 0
    for step in steps:
        uses = []
        for owner, j in step.param_owners():
            blob = owner.layer.param_blobs()[j]
            spec = owner.cfg.param[j] if j < len(owner.cfg.param) else ParamSpec()
            frozen = owner.frozen[j]
            if not blob.learned:
                if j < len(owner.cfg.param) and spec.lr_mult != 0:
                    raise owner.cfg.error(
                        f"parameter {j} holds statistics that {owner.type} updates itself, not "
                        f"a learned blob: its lr_mult must be 0, not {spec.lr_mult:g} (Caffe "
                        "refuses this too)", file, "param")
                spec = spec.model_copy(update={"lr_mult": 0.0, "decay_mult": 0.0})
                frozen = True
            if spec.name and spec.name in by_name:
                shared = slots[by_name[spec.name]]
                same = shared.shape == blob.shape if spec.share_mode == "STRICT" else \
                    shared.count == math.prod(blob.shape)
                if not same:
                    raise owner.cfg.error(f"shares parameter '{spec.name}' of shape {shared.shape} from "
                                          f"layer '{shared.key[0]}' but needs {blob.shape}", file, "param")
                for mult in ("lr_mult", "decay_mult"):
                    if getattr(spec, mult) != getattr(shared, mult):
                        raise owner.cfg.error(
                            f"shares parameter '{spec.name}' with layer '{shared.key[0]}' but its "
                            f"{mult} {getattr(spec, mult):g} differs from {getattr(shared, mult):g} "
                            "there (Caffe refuses this too)", file, "param")
                uses.append(ParamUse(by_name[spec.name], frozen, None if frozen else shadow))
                if not frozen:
                    shadow += aligned(shared.count)
                continue
            problem = check_filler(blob.filler, tuple(blob.shape))
            if problem:
                raise owner.cfg.error(f"parameter {j}: {problem}", file)
            slot = ParamSlot((owner.name, j), tuple(blob.shape), offset, spec.lr_mult, spec.decay_mult,
                             blob.filler, blob.learned)
            if spec.name:
                by_name[spec.name] = len(slots)
            uses.append(ParamUse(len(slots), frozen))
            slots.append(slot)
            offset += aligned(slot.count)
        out.append(replace(step, params=uses))
    return out, slots, offset, shadow
