"""Pass 8: place activations, gradients and layer buffers in one arena by liveness.

Time runs forward through the steps, then a seed (loss gradients are set), then backward
in reverse.  Each buffer is live from its first write to its last read; buffers whose
lives do not overlap may share bytes.  Placement is greedy, largest first, at the lowest
offset free for the whole of its life.

Per-call scratch (``Buffer(scratch=True)``: im2col columns) has no life of its own: it is valid
only within one forward or one backward call of its step, and steps run one after another (in
plan order on the CPU, in one stream on a GPU, inside a CUDA graph too), so every step's scratch
lies in one workspace, alive the whole pass and as large as the largest step's scratch, as
Caffe's shared column buffer.  A step's own scratch buffers sit side by side in it.  A
plan where no step runs a backward keeps instead each step's scratch live for its step alone,
packed among the blobs, when that makes the arena smaller (its forward is the only call).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from dataclasses import replace
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
    n = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize  # Python ints: no wrap
    return (n + ALIGN - 1) // ALIGN * ALIGN


WORKSPACE = ("workspace",)  # the key of the shared scratch interval


def scratch_layout(steps: list[Step]) -> tuple[dict[int, dict[str, int]], int]:
    """Each step's scratch buffers as offsets (bytes) within the workspace, and the workspace's
    size: the largest step's scratch, each buffer aligned.  A data layer may run on the host
    beside device work (``Net.host_steps``), so it must not use the workspace."""
    offsets: dict[int, dict[str, int]] = {}
    size = 0
    for s in steps:
        top = 0
        for name, buf in s.buffer_decls().items():
            if buf.scratch:
                if s.layer.is_data:
                    raise ValueError(f"data layer '{s.name}' declares scratch buffer '{name}'")
                offsets.setdefault(s.index, {})[name] = top
                top += _size(buf.shape, buf.dtype)
        size = max(size, top)
    return offsets, size


def live_intervals(steps: list[Step], blobs: dict[str, Blob], backward: bool,
                   seeds: dict[str, float], keep: frozenset[str] = frozenset(),
                   workspace: bool = True) -> list[Interval]:
    """``seeds``: the gradients the Net sets before backward (see ``diff_seeds``); ``keep``:
    blobs readable after the pass (value and gradient), as the outputs are.  ``workspace``: the
    scratch buffers in one shared interval (``WORKSPACE``), else each in one of its own."""
    n = seed = len(steps)
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
            if layer.reads_bottom(s.ctx):
                for b in s.bottoms:
                    touch(data, b, bwd(s.index))
            if layer.reads_top(s.ctx):
                for t in s.tops:
                    touch(data, t, bwd(s.index))
            for t in s.tops:
                touch(diff, t, bwd(s.index))
            for b, p in zip(s.bottoms, s.propagate_down):
                if p:
                    touch(diff, b, bwd(s.index))
        last = bwd(s.index) if (backward and s.need_backward) else s.index
        intervals += [Interval(("buf", s.index, name), _size(buf.shape, buf.dtype),
                               *((0, end_of_time) if buf.keep else (s.index, last)))
                      for name, buf in s.buffer_decls().items() if not (buf.scratch and workspace)]
    size = scratch_layout(steps)[1] if workspace else 0
    if size:
        intervals.append(Interval(WORKSPACE, size, 0, end_of_time))
    if backward:
        for name in seeds:
            touch(diff, name, seed)
    for name in net_outputs(steps):
        touch(data, name, end_of_time)  # readable after the pass
    for name in keep:
        touch(data, name, end_of_time)
        if name in diff:
            touch(diff, name, end_of_time)
    for name, (start, stop) in data.items():
        intervals.append(Interval(("data", name), _size(blobs[name].shape), start, stop))
    for name, (start, stop) in diff.items():
        intervals.append(Interval(("diff", name), _size(blobs[name].shape), start, stop))
    return intervals


def pack(intervals: list[Interval], reuse: bool = True) -> int:
    """Assign offsets; returns the arena size in bytes.  Each buffer, largest first, goes to the
    lowest offset free for the whole of its life; the buffers it must avoid are found through a
    segment tree over time (``_Timeline``), so packing stays near n log n where comparing each
    buffer with every one placed before was quadratic (8 s for a 4,000-layer training net)."""
    order = sorted(intervals, key=lambda v: (-v.nbytes, v.start, str(v.key)))
    if not reuse:
        top = 0
        for iv in order:
            iv.offset, top = top, top + iv.nbytes
        return top
    timeline = _Timeline(1 + max((iv.end for iv in intervals), default=0))
    top = 0
    for iv in order:
        iv.offset = timeline.lowest_free(iv.start, iv.end, iv.nbytes)
        timeline.take(iv.start, iv.end, iv.offset, iv.offset + iv.nbytes)
        top = max(top, iv.offset + iv.nbytes)
    return top


class _Timeline:
    """The byte ranges taken at each time step, as a segment tree over time.

    A buffer living over [start, end] is recorded, as a range of bytes, at the O(log T) nodes
    that exactly cover [start, end] (``cover``) and, in ``within``, at those nodes and all their
    ancestors.  The buffers alive at some moment of a query's span are then those recorded in
    ``within`` at the query's own covering nodes plus those in ``cover`` at their ancestors.  Each
    node keeps its ranges merged (touching ranges join), so a chain of buffers packed end to end
    is one range however many buffers it holds."""

    def __init__(self, horizon: int):
        self.size = 1
        while self.size < horizon:
            self.size *= 2
        self.cover: dict[int, tuple[list[int], list[int]]] = {}
        self.within: dict[int, tuple[list[int], list[int]]] = {}

    def _nodes(self, start: int, end: int) -> tuple[list[int], set[int]]:
        lo, hi, span = start + self.size, end + self.size + 1, []
        while lo < hi:
            if lo & 1:
                span.append(lo)
                lo += 1
            if hi & 1:
                hi -= 1
                span.append(hi)
            lo, hi = lo >> 1, hi >> 1
        above: set[int] = set()
        for node in span:
            node >>= 1
            while node and node not in above:
                above.add(node)
                node >>= 1
        return span, above

    def lowest_free(self, start: int, end: int, nbytes: int) -> int:
        span, above = self._nodes(start, end)
        taken = [zip(*self.within[n]) for n in span if n in self.within]
        taken += [zip(*self.cover[n]) for n in above if n in self.cover]
        offset = 0
        for lo, hi in heapq.merge(*taken):
            if offset + nbytes <= lo:
                break
            offset = max(offset, hi)
        return offset

    def take(self, start: int, end: int, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        span, above = self._nodes(start, end)
        for node in span:
            _add_range(self.cover.setdefault(node, ([], [])), lo, hi)
        for node in itertools.chain(span, above):
            _add_range(self.within.setdefault(node, ([], [])), lo, hi)


def _add_range(ranges: tuple[list[int], list[int]], lo: int, hi: int) -> None:
    """Add [lo, hi) to sorted, disjoint, non-touching ranges (starts, ends), merging."""
    starts, ends = ranges
    i = bisect.bisect_left(ends, lo)      # the first range ending at or after lo
    j = bisect.bisect_right(starts, hi)   # past the last range starting at or before hi
    if i < j:
        lo, hi = min(lo, starts[i]), max(hi, ends[j - 1])
    starts[i:j] = [lo]
    ends[i:j] = [hi]


def assign_memory(steps: list[Step], blobs: dict[str, Blob], backward: bool,
                  seeds: dict[str, float], reuse: bool = True,
                  keep: frozenset[str] = frozenset()) -> tuple[list[Step], dict[str, Blob], dict[str, int]]:
    """New steps with their buffers' Regions, new blobs with theirs, and the arena size and, for
    reports, the bytes of blobs (activations and their gradients) alone, packed with and without
    reuse, and the shared workspace of per-call scratch (its offset and bytes, and the steps that
    use it).  Without reuse every scratch buffer has bytes of its own, as every blob has."""
    intervals = live_intervals(steps, blobs, backward, seeds, keep, workspace=reuse)
    size = pack(intervals, reuse)
    separate = live_intervals(steps, blobs, backward, seeds, keep, workspace=False)
    shared = reuse
    if reuse and not any(s.need_backward for s in steps):
        alone = pack(separate, reuse)
        if alone < size:
            intervals, size, shared = separate, alone, False
    buffers: dict[int, dict[str, Region]] = {}
    regions: dict[tuple[str, str], Region] = {}  # (blob, "data" or "diff")
    scratch, workspace = scratch_layout(steps)
    at = next((iv.offset for iv in intervals if iv.key == WORKSPACE), 0)
    if shared:
        for i, table in scratch.items():
            decls = steps[i].buffer_decls()
            for name, off in table.items():
                buffers.setdefault(i, {})[name] = Region(at + off, tuple(decls[name].shape), decls[name].dtype)
    for iv in intervals:
        kind = iv.key[0]
        if iv.key == WORKSPACE:
            continue
        if kind in ("data", "diff"):
            regions[iv.key[1], kind] = Region(iv.offset, blobs[iv.key[1]].shape)
        else:
            buf = steps[iv.key[1]].buffer_decls()[iv.key[2]]
            buffers.setdefault(iv.key[1], {})[iv.key[2]] = Region(iv.offset, tuple(buf.shape), buf.dtype)
    steps = [replace(s, buffers=buffers.get(s.index, {})) for s in steps]
    blobs = {name: replace(b, data=regions.get((name, "data")), diff=regions.get((name, "diff")))
             for name, b in blobs.items()}
    blob_ivs = [Interval(iv.key, iv.nbytes, iv.start, iv.end) for iv in intervals
                if iv.key[0] in ("data", "diff")]
    return steps, blobs, {"arena": size, "arena_no_reuse": sum(iv.nbytes for iv in separate),
            "blobs": pack(blob_ivs, reuse), "blobs_no_reuse": sum(iv.nbytes for iv in blob_ivs),
            "workspace": workspace if shared else 0, "workspace_offset": at if shared else 0,
            "workspace_steps": len(scratch) if shared else 0}
