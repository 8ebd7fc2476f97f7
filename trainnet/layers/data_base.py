"""What every data layer shares: the transform, the reader it runs, its GPU staging.

A data layer shapes its tops at compile time from its source (the first record, a file's
header) and builds its reader when a Net is built (``make_reader``): a ``BatchReader`` that
fills batches in background workers, or any object with the same methods (``next_batch``,
``checkpoint``, ``state_at``, ``get_state``, ``set_state``, ``notes``).  On a GPU the reader is
wrapped in a ``StagedReader``: the next batch is gathered into pinned memory and uploaded on a
side stream while the device computes on the current one.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Optional

import numpy as np

from trainnet.data.paths import resolve_data_path
from trainnet.data.pipeline import BatchReader, Feeder
from trainnet.data.sampler import Sampler
from trainnet.data.transform import Transformer, check_param
from trainnet.errors import TrainnetError
from trainnet.formats.blobproto import load_mean
from trainnet.layers.base import StepIO, count_tops
from trainnet.layers.host_data import HostData
from trainnet.netcfg.common import TransformationParameter


class DataLayer(HostData):
    """Base of the layers that read a dataset: tops from a reader."""

    @property
    def transform_param(self) -> TransformationParameter:
        return getattr(self.common, "transform_param", None) or TransformationParameter()

    @property
    def with_labels(self) -> bool:
        return count_tops(self, 2) > 1

    def check_no_transform(self) -> None:
        """Refuse a transform_param on a layer that applies none (as Caffe's CHECKs do)."""
        if self.transform_param != TransformationParameter():
            raise self.error(f"transform_param: {self.type} does not transform its data (as in "
                             "Caffe); prepare the data beforehand")

    def transformer(self, item_shape: tuple[int, int, int]) -> Transformer:
        """Caffe's DataTransformer for records of ``item_shape``, its mean_file loaded."""
        tp = self.transform_param
        try:
            check_param(tp)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        mean = None
        if tp.mean_file:
            try:
                mean = load_mean(resolve_data_path(tp.mean_file, self.data_root, what="mean file"))
            except TrainnetError as exc:
                raise self.error(f"transform_param.mean_file: {exc}") from None
        try:
            return Transformer(tp, self.phase == "TRAIN", item_shape, mean)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def batch_reader(self, feeder: Feeder, rng: np.random.Generator) -> BatchReader:
        """A reader of ``feeder`` seeded from the net's ``rng``, with the layer's shuffle,
        rand_skip (Caffe skips a random number of items in [0, rand_skip) at the start, so that
        parallel runs differ), workers and prefetch."""
        p = self.p
        reader_rng = np.random.default_rng(int(rng.integers(2**63)))
        rand_skip = getattr(p, "rand_skip", 0)
        skip = int(reader_rng.integers(rand_skip)) if rand_skip else 0
        sampler = Sampler(feeder.n, reader_rng, shuffle=p.shuffle, skip=skip, blocks=feeder.blocks)
        return BatchReader(feeder, sampler, self.top_shapes, workers=p.workers, prefetch=p.prefetch)

    @abstractmethod
    def make_reader(self, rng: np.random.Generator) -> Any:
        """The host-side reader filling this layer's tops (a ``BatchReader``)."""

    def make_state(self, rng: np.random.Generator, device=None):
        reader = self.make_reader(rng)
        if device is None or not device.is_gpu:
            return reader
        return StagedReader(reader, self.top_shapes, device.backend)

    def forward_cpu(self, io: StepIO):
        io.state.next_batch(*io.top)

    def forward_gpu(self, io: StepIO):
        """Host work (gather, queue uploads): the Net runs it before the captured graph."""
        io.state.forward(io.top)


class PinnedPair:
    """Two sets of pinned host buffers, one buffer per shape, used in turn: the host fills one
    set while the other's upload may still run.  ``uploaded[i]`` is the event recorded after the
    last upload from set ``i``; ``take`` hands a set out once that upload has left it."""

    def __init__(self, backend, shapes: list[tuple[int, ...]]):
        self.gpu = backend
        self.sets = [[backend.pinned(s, np.float32) for s in shapes] for _ in range(2)]
        self.uploaded: list = [None, None]

    def take(self, slot: int) -> list[np.ndarray]:
        """Set ``slot``, after the host has waited for its last upload."""
        self.gpu.host_wait(self.uploaded[slot])
        return self.sets[slot]


class StagedReader:
    """A reader feeding a GPU: batches gathered on the host overlap the device's compute.

    Two pinned host buffers and two device staging buffers per top, used in turn.  Each
    forward waits (on the device) for the current staging buffer's upload, copies it into the
    tops on the compute stream, then gathers the next batch into the other pinned buffer and
    queues its upload on the side stream, after the device has consumed that staging buffer's
    previous batch.  The reader is thus one batch ahead of what the net has seen; ``get_state``
    reports the reader as of the batches consumed, so a resumed run sees the same sequence.
    A reader whose input the user replaces between passes (MemoryData: ``ahead`` False) is
    read when its batch is needed instead.
    """

    def __init__(self, reader, shapes: list[tuple[int, ...]], backend):
        self.reader, self.gpu = reader, backend
        self.ahead = getattr(reader, "read_ahead", True)
        self.host = PinnedPair(backend, shapes)  # its uploaded[i]: staging[i] holds its batch
        self.staging = [[backend.zeros(s, np.float32) for s in shapes] for _ in range(2)]
        # compute-stream events: staging[i] copied out; at first, zero-filled (on the compute
        # stream), so that the side stream's first uploads into them wait for the fill
        zeroed = backend.record()
        self.consumed: list = [zeroed, zeroed]
        self.slot = 0
        self.primed = False                 # staging[slot] holds (or will hold) the next batch
        self.consumed_at: Optional[tuple] = None  # the reader's checkpoint after the last batch used

    def _prepare(self, slot: int) -> None:
        """Gather the reader's next batch into pinned set ``slot`` and queue its upload."""
        host = self.host.take(slot)
        self.reader.next_batch(*host)
        after = self.consumed[slot]
        for dst, src in zip(self.staging[slot], host):
            self.host.uploaded[slot] = self.gpu.upload_side(dst, src, after=after)
            after = None  # the side stream runs its copies in order

    def forward(self, tops: list) -> None:
        gpu = self.gpu
        if not self.primed:
            self._prepare(self.slot)
            self.primed = True
        cur = self.slot
        gpu.wait(self.host.uploaded[cur])
        for top, staged in zip(tops, self.staging[cur]):
            gpu.copy(top, staged)
        self.consumed[cur] = gpu.record()
        self.consumed_at = self.reader.checkpoint()
        self.slot = 1 - cur
        if self.ahead:
            self._prepare(self.slot)
        else:
            self.primed = False

    def checkpoint(self) -> Any:
        """The reader's position as of the batches consumed (not the one read ahead)."""
        if not self.primed or self.consumed_at is None:
            return self.reader.checkpoint()
        return self.consumed_at

    def get_state(self) -> dict[str, np.ndarray]:
        return self.reader.state_at(self.checkpoint())

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.reader.set_state(state)
        self.primed = False  # the batch read ahead belongs to the old position: read it again

    def notes(self) -> list[str]:
        return self.reader.notes()

    def __getattr__(self, name: str):  # the wrapped reader's own methods (set_arrays ...)
        if name == "reader":
            raise AttributeError(name)
        return getattr(self.reader, name)
