"""Pass 7: place activations, gradients and layer buffers in one arena by liveness.

Time runs forward through the steps, then a seed (loss gradients are set), then backward
in reverse.  Each buffer is live from its first write to its last read; buffers whose
lives do not overlap may share bytes.  Placement is greedy, largest first, at the lowest
offset free for the whole of its life.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainnet.plan.plan import ALIGN, Blob, Region, Step, net_outputs


@dataclass
class Interval:
    key: tuple
    nbytes: int
    start: int
    end: int      # inclusive
    offset: int = -1


def _size(shape, dtype=np.float32) -> int:
    n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return (n + ALIGN - 1) // ALIGN * ALIGN


def live_intervals(steps: list[Step], blobs: dict[str, Blob], backward: bool,
                   seeds: dict[str, float]) -> list[Interval]:
    """``seeds``: the gradients the Net sets before backward (see ``diff_seeds``)."""
    n = len(steps)
    seed = n
    end_of_time = 2 * n + 1 if backward else n

    def bwd(i: int) -> int:
        return 2 * n - i

    data: dict[str, list[int]] = {}
    diff: dict[str, list[int]] = {}

    def touch(table, name, t):
        span = table.setdefault(name, [t, t])
        span[0], span[1] = min(span[0], t), max(span[1], t)

    intervals: list[Interval] = []
    for s in steps:
        layer = s.layer
        for b in s.bottoms:
            touch(data, b, s.index)
        for t in s.tops:
            # the user fills an Input's blobs before the pass starts
            touch(data, t, 0 if layer.filled_by_user else s.index)
        if backward and s.need_backward:
            if layer.backward_reads_bottom:
                for b in s.bottoms:
                    touch(data, b, bwd(s.index))
            if layer.backward_reads_top:
                for t in s.tops:
                    touch(data, t, bwd(s.index))
            for t in s.tops:
                touch(diff, t, bwd(s.index))
            for b, p in zip(s.bottoms, s.propagate_down):
                if p:
                    touch(diff, b, bwd(s.index))
        for name, buf in layer.buffers().items():
            last = bwd(s.index) if (backward and s.need_backward) else s.index
            start, stop = (0, end_of_time) if buf.keep else (s.index, last)
            intervals.append(Interval(("buf", s.index, name), _size(buf.shape, buf.dtype), start, stop))
    if backward:
        for name in seeds:
            touch(diff, name, seed)
    for name in net_outputs(steps):
        touch(data, name, end_of_time)  # readable after the pass
    for name, (start, stop) in data.items():
        intervals.append(Interval(("data", name), _size(blobs[name].shape), start, stop))
    for name, (start, stop) in diff.items():
        intervals.append(Interval(("diff", name), _size(blobs[name].shape), start, stop))
    return intervals


def pack(intervals: list[Interval], reuse: bool = True) -> int:
    """Assign offsets; returns the arena size in bytes."""
    placed: list[Interval] = []
    top = 0
    for iv in sorted(intervals, key=lambda v: (-v.nbytes, v.start, str(v.key))):
        if not reuse:
            iv.offset = top
        else:
            busy = sorted((p.offset, p.offset + p.nbytes) for p in placed
                          if p.start <= iv.end and iv.start <= p.end)
            offset = 0
            for lo, hi in busy:
                if offset + iv.nbytes <= lo:
                    break
                offset = max(offset, hi)
            iv.offset = offset
        placed.append(iv)
        top = max(top, iv.offset + iv.nbytes)
    return top


def assign_memory(steps: list[Step], blobs: dict[str, Blob], backward: bool,
                  seeds: dict[str, float], reuse: bool = True) -> dict[str, int]:
    """Fill in every Region; returns the arena size and, for reports, the bytes of blobs
    (activations and their gradients) alone, packed with and without reuse."""
    intervals = live_intervals(steps, blobs, backward, seeds)
    size = pack(intervals, reuse)
    for iv in intervals:
        kind = iv.key[0]
        if kind == "data":
            blobs[iv.key[1]].data = Region(iv.offset, blobs[iv.key[1]].shape)
        elif kind == "diff":
            blobs[iv.key[1]].diff = Region(iv.offset, blobs[iv.key[1]].shape)
        else:
            step = steps[iv.key[1]]
            buf = step.layer.buffers()[iv.key[2]]
            step.buffers[iv.key[2]] = Region(iv.offset, tuple(buf.shape), buf.dtype)
    blob_ivs = [Interval(iv.key, iv.nbytes, iv.start, iv.end) for iv in intervals if iv.key[0] != "buf"]
    return {"arena": size, "arena_no_reuse": sum(iv.nbytes for iv in intervals),
            "blobs": pack(blob_ivs, reuse), "blobs_no_reuse": sum(iv.nbytes for iv in blob_ivs)}
