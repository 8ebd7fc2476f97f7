"""The flat parameter arenas: data, and diff in the same layout."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.weightkey import split_key, weight_key
from trainnet.layers.fillers import fill
from trainnet.plan.params import aligned
from trainnet.plan.plan import ParamSlot
from trainnet.runtime.device import CPU, Device


class ParamStore:
    """Learnable blobs in one flat float32 arena, with gradients alongside in the same layout.

    Built from a training plan's slots; test nets reuse it by layer name, so they always see
    the current weights.  ``slots`` may be any subset: the store lays them out afresh.
    """

    def __init__(self, slots: list[ParamSlot], rng: np.random.Generator, device: Device = CPU):
        offset, self.slots = 0, []
        for slot in slots:
            self.slots.append(replace(slot, offset=offset))
            offset += aligned(slot.count)
        self.device = device
        self.data = device.zeros(offset, dtype=np.float32)
        self.diff = device.zeros(offset, dtype=np.float32)
        self.index = {slot.key: i for i, slot in enumerate(self.slots)}
        host = np.zeros(offset, dtype=np.float32)
        for slot in self.slots:
            fill(host[slot.offset:slot.offset + slot.count].reshape(slot.shape), slot.filler, rng)
        device.upload(self.data, host)

    def view(self, arena, i: int):
        slot = self.slots[i]
        return arena[slot.offset:slot.offset + slot.count].reshape(slot.shape)

    def lookup(self, slot: ParamSlot) -> int:
        """The index of the slot matching ``slot`` (same owner layer, index and shape)."""
        i = self.index.get(slot.key)
        if i is None:
            raise TrainnetError(f"layer '{slot.key[0]}' has parameters in this net but not in the "
                                "net that owns the weights (the training net)")
        if self.slots[i].shape != slot.shape:
            raise TrainnetError(f"layer '{slot.key[0]}' parameter {slot.key[1]}: shape {slot.shape} "
                                f"here but {self.slots[i].shape} in the training net")
        return i

    def named(self, arena=None) -> dict[str, np.ndarray]:
        """Every blob of ``arena`` (data by default) by its weight key, as views of it."""
        arena = self.data if arena is None else arena
        return {weight_key(*s.key): self.view(arena, i) for i, s in enumerate(self.slots)}

    def named_host(self) -> dict[str, np.ndarray]:
        """Every weight blob by its key, in host memory (one copy of the arena from a GPU)."""
        return self.named(self.device.to_host(self.data) if self.device.is_gpu else self.data)

    def assign(self, key: str, host: np.ndarray) -> None:
        """Set the blob ``key`` (a weight key) from a host array of its shape."""
        i = self.index[split_key(key)]
        self.device.upload(self.view(self.data, i), np.asarray(host, np.float32))

    def multipliers(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-element lr_mult and decay_mult over the flat layout (for one-pass updates)."""
        lr = np.zeros(self.data.shape, dtype=np.float32)
        decay = np.zeros(self.data.shape, dtype=np.float32)
        for s in self.slots:
            lr[s.offset:s.offset + s.count] = s.lr_mult
            decay[s.offset:s.offset + s.count] = s.decay_mult
        return lr, decay
