"""Reading a data layer's batches in a test, the way a Net's forward does on the CPU."""

from __future__ import annotations

import numpy as np


def read_batches(layer, count: int, seed: int = 0, state=None):
    """``count`` batches (each a list of the tops' arrays) from a new reader of ``layer`` seeded
    with ``seed`` (and set to ``state`` when given); returns them and the reader."""
    reader = layer.make_state(np.random.default_rng(seed))
    if state is not None:
        reader.set_state(state)
    out = []
    for _ in range(count):
        tops = [np.empty(s, np.float32) for s in layer.top_shapes]
        reader.next_batch(*tops)
        out.append(tops)
    return out, reader
