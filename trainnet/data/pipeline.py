"""Batches filled in background threads, ``prefetch`` deep, always in the same order.

A ``BatchReader`` draws each batch's items and random choices on the calling thread, in batch
order (``Sampler`` and ``Feeder.draw``), then hands the filling (decoding records, cropping,
subtracting the mean) to ``workers`` threads, each taking a slice of the batch.  So the batch
sequence depends on the seed alone, never on the number of workers, and the state a snapshot
stores is the sampler's as of the last batch handed out (``checkpoint``), not as of the batches
read ahead.  Pillow and NumPy release the GIL while they decode and compute, which is what
lets threads overlap them with training.

``workers: 0`` fills each batch on the calling thread, when it is asked for.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable, Optional

import numpy as np

from trainnet.data.datum import RecordError
from trainnet.data.sampler import Sampler
from trainnet.data.transform import Transformer
from trainnet.errors import TrainnetError


class Feeder(ABC):
    """What a reader fills batches from: ``n`` items (in ``blocks`` to shuffle blockwise)."""

    n: int = 0
    blocks: Optional[list[int]] = None
    chunked: bool = True  # fill slices of a batch on several workers

    def draw(self, rng: np.random.Generator, b: int) -> Any:
        """The batch's random choices, drawn in order on the reader's thread."""
        return None

    @abstractmethod
    def fill(self, idx: np.ndarray, draws: Any, lo: int, hi: int, outs: list[np.ndarray]) -> None:
        """Write items ``lo:hi`` of the batch ``idx`` into every top's array (may run on a
        worker thread; must only touch rows lo:hi)."""

    def notes(self) -> list[str]:
        """Messages for the training log since the last call (records skipped)."""
        return []


class ArrayFeeder(Feeder):
    """Items of an in-memory array (IDX, CIFAR batches): one vectorized gather per batch."""

    chunked = False

    def __init__(self, images: np.ndarray, labels: Optional[np.ndarray], transformer: Transformer):
        self.images, self.labels, self.transformer = images, labels, transformer
        self.n = len(images)

    def draw(self, rng, b):
        return self.transformer.draw(rng, b)

    def fill(self, idx, draws, lo, hi, outs):
        self.transformer.apply_batch(self.images, idx[lo:hi], draws.subset(lo, hi), outs[0][lo:hi])
        if len(outs) > 1:
            outs[1][lo:hi] = self.labels[idx[lo:hi]]


class RecordFeeder(Feeder):
    """Items decoded one at a time: ``load(i)`` gives a CHW image and its label, ``where(i)``
    names the record (a database key, an image file) for messages.

    A record that fails to load or does not fit the layer's shape is an error naming the source
    and the record, or with ``skip_bad`` is replaced by the next good record in the source's
    order (the same whatever the workers) and counted in the log.
    """

    def __init__(self, name: str, n: int, load: Callable[[int], tuple[np.ndarray, int]],
                 where: Callable[[int], str], transformer: Transformer, skip_bad: bool = False):
        self.name, self.n, self.load, self.where = name, n, load, where
        self.transformer, self.skip_bad = transformer, skip_bad
        self.bad: set[int] = set()  # records found unreadable, skipped from then on
        self._notes: list[str] = []
        self._lock = threading.Lock()

    def draw(self, rng, b):
        return self.transformer.draw(rng, b)

    def _checked(self, i: int) -> tuple[np.ndarray, int]:
        image, label = self.load(i)
        c, h, w = self.transformer.item_shape
        if image.shape[0] != c:
            raise RecordError(f"has {image.shape[0]} channels, the first record {c}")
        mean = self.transformer.mean_image
        if mean is not None and image.shape != mean.shape:  # Caffe CHECKs this too
            raise RecordError(f"is {'x'.join(map(str, image.shape))}, but the mean_file is "
                              f"{'x'.join(map(str, mean.shape))}: they must agree")
        crop = self.transformer.crop
        if crop and min(image.shape[1:]) < crop:
            raise RecordError(f"is {image.shape[1]}x{image.shape[2]}, smaller than crop_size {crop}")
        if not crop and image.shape[1:] != (h, w):
            raise RecordError(f"is {image.shape[1]}x{image.shape[2]}, the first record {h}x{w} "
                              "(records must share a size unless cropped)")
        return image, label

    def _good(self, i: int) -> tuple[np.ndarray, int]:
        first = i
        while True:
            if i not in self.bad:
                try:
                    return self._checked(i)
                except RecordError as exc:
                    if not self.skip_bad:
                        raise TrainnetError(f"{self.name}: {self.where(i)}: {exc}") from None
                    with self._lock:
                        if i not in self.bad:
                            self.bad.add(i)
                            self._notes.append(f"{self.name}: skipped {self.where(i)}: {exc} "
                                               f"({len(self.bad)} bad so far)")
            i = (i + 1) % self.n
            if i == first:
                raise TrainnetError(f"{self.name}: no record could be read ({len(self.bad)} bad)")

    def fill(self, idx, draws, lo, hi, outs):
        data = outs[0]
        for k in range(lo, hi):
            i = int(idx[k])
            image, label = self._good(i)
            self.transformer.apply(image, draws, k, data[k])
            if len(outs) > 1:
                outs[1][k] = label

    def notes(self):
        with self._lock:
            notes, self._notes = self._notes, []
        return notes


class BatchReader:
    """Fills the tops of a data layer batch by batch, ``prefetch`` batches ahead."""

    def __init__(self, feeder: Feeder, sampler: Sampler, shapes: list[tuple[int, ...]],
                 workers: int = 1, prefetch: int = 4):
        self.feeder, self.sampler, self.shapes = feeder, sampler, [tuple(s) for s in shapes]
        self.batch = self.shapes[0][0]
        self.workers, self.prefetch = workers, max(prefetch, 1)
        self.handed = sampler.checkpoint()     # the sampler as of the batches handed out
        self.inflight: deque = deque()         # (buffers, futures, checkpoint) in batch order
        self.free: list[list[np.ndarray]] = []
        self.pool: Optional[ThreadPoolExecutor] = None

    def _plan(self) -> tuple[np.ndarray, Any]:
        idx = self.sampler.next_indices(self.batch)
        return idx, self.feeder.draw(self.sampler.rng, self.batch)

    def _chunks(self) -> list[tuple[int, int]]:
        parts = self.workers if self.feeder.chunked else 1
        bounds = np.linspace(0, self.batch, min(parts, self.batch) + 1).astype(int)
        return list(zip(bounds[:-1], bounds[1:]))

    def _submit(self) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="trainnet-data")
        buffers = self.free.pop() if self.free else [np.empty(s, np.float32) for s in self.shapes]
        idx, draws = self._plan()
        futures = [self.pool.submit(self.feeder.fill, idx, draws, lo, hi, buffers)
                   for lo, hi in self._chunks()]
        self.inflight.append((buffers, futures, self.sampler.checkpoint()))

    def next_batch(self, *outs: Optional[np.ndarray]) -> None:
        """Write the next batch into ``outs`` (the tops, in order; trailing ones may be left out)."""
        outs = [o for o in outs if o is not None]
        if self.workers == 0:
            idx, draws = self._plan()
            self.feeder.fill(idx, draws, 0, self.batch, outs)
            self.handed = self.sampler.checkpoint()
            return
        while len(self.inflight) < self.prefetch:
            self._submit()
        buffers, futures, checkpoint = self.inflight.popleft()
        try:
            for future in futures:
                future.result()
        except BaseException:
            wait(futures)  # the batch's other slices may still be writing into its buffers
            self.free.append(buffers)
            self._drain()
            self.sampler.set_state(Sampler.state_at(self.handed))  # as if nothing was read ahead
            raise
        for out, buffer in zip(outs, buffers):
            np.copyto(out, buffer)
        self.free.append(buffers)
        self.handed = checkpoint
        self._submit()

    def _drain(self) -> None:
        """Let the batches in flight finish (they write into the buffers) and drop them."""
        while self.inflight:
            buffers, futures, _ = self.inflight.popleft()
            wait(futures)
            self.free.append(buffers)

    # --- state ----------------------------------------------------------------------------
    def checkpoint(self) -> tuple:
        return self.handed

    @staticmethod
    def state_at(checkpoint: tuple) -> dict[str, np.ndarray]:
        return Sampler.state_at(checkpoint)

    def get_state(self) -> dict[str, np.ndarray]:
        return Sampler.state_at(self.handed)

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self._drain()  # read ahead from the old position
        self.sampler.set_state(state)
        self.handed = self.sampler.checkpoint()

    def notes(self) -> list[str]:
        return self.feeder.notes()

    def __del__(self):
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
