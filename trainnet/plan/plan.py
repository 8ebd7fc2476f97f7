"""The Plan: what the compiler produces and the runtime executes.

Everything a Net needs is decided here, once: the order of steps, every blob's shape, where
its data and diff live in the activation arena, every layer's private buffers, and where
each parameter blob lives in the flat parameter arena.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from trainnet.layers.base import NO_PLAN, Layer, ParamBlob, Shape, StepContext
from trainnet.netcfg.common import FillerParameter
from trainnet.netcfg.net import LayerConfig

ALIGN = 64  # bytes: every region starts on a cache line


@dataclass(frozen=True)
class Region:
    """A slice of the activation arena."""

    offset: int  # bytes
    shape: Shape
    dtype: Any = np.float32

    @property
    def nbytes(self) -> int:
        return math.prod(int(d) for d in self.shape) * np.dtype(self.dtype).itemsize


@dataclass
class Blob:
    name: str
    shape: Shape
    data: Optional[Region] = None
    diff: Optional[Region] = None   # None when nothing needs this blob's gradient


@dataclass(frozen=True)
class ParamSlot:
    """One learnable blob in the flat parameter arena (shared blobs have one slot)."""

    key: tuple[str, int]   # (owner layer name, blob index)
    shape: Shape
    offset: int            # elements
    lr_mult: float
    decay_mult: float
    filler: FillerParameter
    learned: bool = True   # False: state the layer updates itself (lr_mult and decay_mult are 0)

    @property
    def count(self) -> int:
        return math.prod(int(d) for d in self.shape)  # Python ints: a huge blob cannot wrap


@dataclass(frozen=True)
class ParamUse:
    """A layer's view of one slot; ``shadow`` is where a non-owner of a shared blob writes its
    gradient (summed into the owner's afterwards), in elements past the main layout."""

    slot: int
    frozen: bool
    shadow: Optional[int] = None


@dataclass
class Step:
    index: int
    cfg: LayerConfig
    layer: Optional[Layer] = None
    bottoms: list[str] = field(default_factory=list)
    tops: list[str] = field(default_factory=list)
    loss_weights: list[float] = field(default_factory=list)
    inserted: bool = False            # added by the compiler (a split)
    auto_in_place: bool = False       # made in place by the compiler
    fused: list[str] = field(default_factory=list)     # steps folded into this one (Scale, ReLU)
    absorbed: list["Step"] = field(default_factory=list)  # folded steps whose params it carries
    need_backward: bool = False
    propagate_down: list[bool] = field(default_factory=list)
    frozen: list[bool] = field(default_factory=list)   # per parameter blob: takes no update
    params: list[ParamUse] = field(default_factory=list)
    buffers: dict[str, Region] = field(default_factory=dict)
    ctx: StepContext = NO_PLAN        # what the passes decided for the layer (given to it)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def type(self) -> str:
        return self.cfg.type

    @property
    def in_place(self) -> list[str]:
        return [t for t in self.tops if t in self.bottoms]

    def param_blobs(self) -> list[ParamBlob]:
        """The parameter blobs the step binds, in order (see ``param_owners``)."""
        return self.layer.param_blobs() + [b for s in self.absorbed for b in s.layer.param_blobs()]

    def flops(self) -> int:
        """The step's forward flops, those of the layers folded into it included."""
        return self.layer.flops() + sum(s.layer.flops() for s in self.absorbed)

    def buffer_decls(self) -> dict:
        """The layer's private buffers for this step (as the context decides them)."""
        return self.layer.buffers(self.ctx)

    def param_owners(self) -> list[tuple["Step", int]]:
        """Each parameter blob of this step's layer as (the step that declares it, its index
        there): the step's own, then those of the steps folded into it (a Scale folded into a
        BatchNorm keeps its blobs, named after it, with its own lr_mult and decay_mult)."""
        folded = [(s, j) for s in self.absorbed for j in range(len(s.layer.param_blobs()))]
        return [(self, j) for j in range(len(self.layer.param_blobs()))] + folded


@dataclass
class Plan:
    phase: str
    net_name: str
    steps: list[Step]
    blobs: dict[str, Blob]
    params: list[ParamSlot] = field(default_factory=list)
    param_arena: int = 0         # elements in the main layout
    shadow_arena: int = 0        # elements of shadow gradients for shared blobs
    arena_bytes: int = 0         # the activation arena: blobs, gradients and layer buffers
    arena_bytes_no_reuse: int = 0
    blob_bytes: int = 0          # of which blobs and their gradients, packed alone
    blob_bytes_no_reuse: int = 0
    workspace_bytes: int = 0     # of the arena: the per-call scratch every step shares
    workspace_offset: int = 0
    workspace_steps: int = 0     # the steps whose scratch lies there
    backward: bool = True        # a training plan (forward + backward) or forward only
    aliases: dict[str, str] = field(default_factory=dict)  # renamed top -> the blob holding it
    seeds: dict[str, float] = field(default_factory=dict)  # gradients set before backward
    file: Optional[str] = None
    gpu: bool = False            # compiled for a GPU Net (its layers' buffers are the GPU pass's)

    @property
    def base_dir(self) -> Path:
        return Path(self.file).resolve().parent if self.file else Path.cwd()

    @property
    def outputs(self) -> list[str]:
        return net_outputs(self.steps)

    @property
    def param_count(self) -> int:
        return sum(p.count for p in self.params)

    @property
    def learned_count(self) -> int:
        """Parameters the solver updates (BatchNorm's statistics are not among them)."""
        return sum(p.count for p in self.params if p.learned)

    def blob(self, name: str) -> Blob:
        """A blob by its name in the config (in-place tops renamed by the compiler included)."""
        return self.blobs[self.aliases.get(name, name)]

    def step(self, name: str) -> Step:
        by_name = self.__dict__.get("_steps_by_name")
        if by_name is None or len(by_name) != len(self.steps):
            by_name = self.__dict__["_steps_by_name"] = {s.name: s for s in reversed(self.steps)}
        return by_name[name]


def net_outputs(steps: list[Step]) -> list[str]:
    """Blobs no step reads after their last write: the net's outputs (losses, accuracies,
    probabilities).  A layer running in place reads its blob before writing it, so the end of
    an in-place chain is an output too.  Data that nothing reads is not."""
    last_write: dict[str, Step] = {}
    for s in steps:
        for t in s.tops:
            last_write[t] = s
    read_later = {b for s in steps for b in s.bottoms if s.index > last_write[b].index}
    return [t for t, s in last_write.items() if t not in read_later and not s.layer.is_data]


def diff_seeds(steps: list[Step]) -> dict[str, float]:
    """What each gradient holds before backward starts: a loss's weight, or 0 for a gradient
    that backward reads before anything writes it (an output under force_backward, the end of
    an in-place chain, a blob whose consumer takes no gradient).  Every other gradient is
    written before it is read, so it needs no clearing."""
    first_is_read: dict[str, bool] = {}
    for s in steps:  # a later step runs earlier in backward: its touch wins
        if not s.need_backward:
            continue
        written = {b for b, p in zip(s.bottoms, s.propagate_down) if p}
        for name in set(s.tops) | written:
            first_is_read[name] = name in s.tops  # a step reads its top diffs, then writes
    seeds = {name: 0.0 for name, read in first_is_read.items() if read}
    for s in steps:
        for t, w in zip(s.tops, s.loss_weights):
            if w != 0:
                seeds[t] = w
    return seeds
