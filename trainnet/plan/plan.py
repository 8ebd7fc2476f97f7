"""The Plan: what the compiler produces and the runtime executes.

Everything a Net needs is decided here, once: the order of steps, every blob's shape, where
its data and diff live in the activation arena, every layer's private buffers, and where
each parameter blob lives in the flat parameter arena.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from trainnet.layers.base import Layer, Shape
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
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Blob:
    name: str
    shape: Shape
    data: Optional[Region] = None
    diff: Optional[Region] = None   # None when nothing needs this blob's gradient
    zero_diff: bool = False         # read by backward but written by no one: stays zero


@dataclass(frozen=True)
class ParamSlot:
    """One learnable blob in the flat parameter arena (shared blobs have one slot)."""

    key: tuple[str, int]   # (owner layer name, blob index)
    shape: Shape
    offset: int            # elements
    lr_mult: float
    decay_mult: float
    filler: FillerParameter

    @property
    def count(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


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
    need_backward: bool = False
    propagate_down: list[bool] = field(default_factory=list)
    frozen: list[bool] = field(default_factory=list)   # per parameter blob: takes no update
    params: list[ParamUse] = field(default_factory=list)
    buffers: dict[str, Region] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def type(self) -> str:
        return self.cfg.type

    @property
    def in_place(self) -> list[str]:
        return [t for t in self.tops if t in self.bottoms]


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
    backward: bool = True        # a training plan (forward + backward) or forward only
    aliases: dict[str, str] = field(default_factory=dict)  # renamed top -> the blob holding it
    file: Optional[str] = None

    @property
    def base_dir(self) -> Path:
        return Path(self.file).resolve().parent if self.file else Path.cwd()

    @property
    def outputs(self) -> list[str]:
        """Blobs no step consumes: the net's outputs (losses, accuracies, probabilities)."""
        consumed = {b for s in self.steps for b in s.bottoms}
        return [t for s in self.steps for t in s.tops if t not in consumed and not s.layer.is_data]

    @property
    def param_count(self) -> int:
        return sum(p.count for p in self.params)

    def blob(self, name: str) -> Blob:
        """A blob by its name in the config (in-place tops renamed by the compiler included)."""
        return self.blobs[self.aliases.get(name, name)]

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)
