"""Pass 5: run a layer in place when nothing else needs its input any more.

A layer that may run in place (ReLU, Dropout) overwrites its bottom when that bottom has no
other reader, the bottom's producer does not read it back in backward, and the layer itself
does not read its bottom in backward.  Its top is then renamed to the bottom; the old name
stays an alias, so ``Net.data(old_name)`` still works.  Layers configured in place
(``top`` == ``bottom``) are left as they are.
"""

from __future__ import annotations

from dataclasses import replace

from trainnet.plan.plan import Blob, Step


def run_in_place(steps: list[Step], blobs: dict[str, Blob], backward: bool,
                 keep: frozenset[str] = frozenset()) -> tuple[list[Step], dict[str, Blob], dict[str, str]]:
    """New steps, the blobs without the renamed tops, and the aliases (old top name -> blob
    name).  A blob in ``keep`` is never written over.  A renamed top is renamed in the later steps as the walk reaches them (one pass,
    not a rewrite of every later step per renaming)."""
    aliases: dict[str, str] = {}
    producer: dict[str, Step] = {}
    readers: dict[str, int] = {}
    for s in steps:
        for b in s.bottoms:
            readers[b] = readers.get(b, 0) + 1
        for t in s.tops:
            producer.setdefault(t, s)
    out: list[Step] = []
    blobs = dict(blobs)
    for s in steps:
        if aliases:
            s = replace(s, bottoms=[aliases.get(x, x) for x in s.bottoms],
                        tops=[aliases.get(x, x) for x in s.tops])
        if s.bottoms and s.bottoms[0] not in keep and _may_overwrite(s, producer, readers, blobs, backward):
            b, t = s.bottoms[0], s.tops[0]
            s = replace(s, tops=[b], auto_in_place=True)
            del blobs[t]
            producer[b] = s                      # later steps now read b as written by s
            readers[b] = readers.pop(t, 0)
            aliases[t] = b
        out.append(s)
    for old, new in aliases.items():   # a renamed blob renamed again: the name it ends as
        while new in aliases:
            new = aliases[new]
        aliases[old] = new
    return out, blobs, aliases


def _may_overwrite(s: Step, producer: dict[str, Step], readers: dict[str, int],
                   blobs: dict[str, Blob], backward: bool) -> bool:
    """Whether step ``s`` may write its top over its bottom."""
    layer = s.layer
    if not (layer.in_place_ok and len(s.bottoms) == 1 and len(s.tops) == 1):
        return False
    b, t = s.bottoms[0], s.tops[0]
    source = producer.get(b)
    if (t == b or readers.get(b) != 1 or not readers.get(t) or source is None
            or source.layer.is_data or blobs[b].shape != blobs[t].shape
            or any(w != 0 for w in s.loss_weights)):
        return False
    return not (backward and ((source.need_backward and source.layer.reads_top(source.ctx))
                              or (s.need_backward and layer.reads_bottom(s.ctx))))
