"""Which items a data layer reads next: a cursor over an order of the dataset.

Without shuffling the order is the dataset's own (an LMDB's key order, a list file's lines),
wrapping at the end, as Caffe's cursors.  With ``shuffle`` a new permutation is drawn at each
epoch's start from the sampler's generator; ``blocks`` (an HDF5Data layer's files) shuffles the
blocks' order and the items within each block, as Caffe's HDF5 layer does, so one file at a
time is read.  The generator also draws the batch's transform choices, so one state (cursor,
epoch, order, generator) pins down every batch that follows: it is what snapshots store.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.rngstate import rng_from_array, state_to_array

STATE_KEYS = ("cursor", "epoch", "perm", "rng")


class Sampler:
    def __init__(self, n: int, rng: np.random.Generator, shuffle: bool = False, skip: int = 0,
                 blocks: Optional[Sequence[int]] = None):
        if n < 1:
            raise ValueError("a dataset with no items")
        self.n, self.rng, self.shuffle = n, rng, shuffle
        self.blocks = list(blocks) if blocks else [n]
        if sum(self.blocks) != n:
            raise ValueError(f"blocks of {sum(self.blocks)} items for a dataset of {n}")
        self.perm = self._order()
        self.cursor, self.epoch = skip % n, 0

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n, dtype=np.int64)
        if len(self.blocks) == 1:
            return self.rng.permutation(self.n)
        starts = np.concatenate([[0], np.cumsum(self.blocks)[:-1]])
        return np.concatenate([starts[b] + self.rng.permutation(self.blocks[b])
                               for b in self.rng.permutation(len(self.blocks))])

    def next_indices(self, count: int) -> np.ndarray:
        """The next ``count`` items, wrapping (and reshuffling) at each epoch's end."""
        out = np.empty(count, np.int64)
        done = 0
        while done < count:
            k = min(count - done, self.n - self.cursor)
            out[done:done + k] = self.perm[self.cursor:self.cursor + k]
            done, self.cursor = done + k, self.cursor + k
            if self.cursor == self.n:
                self.cursor, self.epoch = 0, self.epoch + 1
                if self.shuffle:
                    self.perm = self._order()
        return out

    # --- state ----------------------------------------------------------------------------
    def checkpoint(self) -> tuple:
        """A light record of where the sampler stands (the order by reference: it is replaced at
        an epoch's end, never changed in place); ``state_at`` expands it."""
        return self.cursor, self.epoch, self.perm, self.rng.bit_generator.state

    @staticmethod
    def state_at(checkpoint: tuple) -> dict[str, np.ndarray]:
        cursor, epoch, perm, rng_state = checkpoint
        return {"cursor": np.array(cursor, np.int64), "epoch": np.array(epoch, np.int64),
                "perm": perm.copy(), "rng": state_to_array(rng_state)}

    def get_state(self) -> dict[str, np.ndarray]:
        return self.state_at(self.checkpoint())

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        missing = set(STATE_KEYS) - set(state)
        if missing:
            raise TrainnetError(f"data reader state lacks {', '.join(sorted(missing))}")
        n = self.n
        perm = np.asarray(state["perm"], np.int64)
        cursor = int(np.asarray(state["cursor"]).reshape(-1)[0])  # files may store scalars as (1,)
        if (perm.shape != (n,) or perm.min() < 0 or perm.max() >= n
                or not np.array_equal(np.bincount(perm, minlength=n), np.ones(n))):
            raise TrainnetError(f"data reader state: the order is not a permutation of {n} items "
                                "(the dataset changed since the snapshot?)")
        if not 0 <= cursor < n:
            raise TrainnetError(f"data reader state: cursor {cursor} out of range for {n} items")
        try:
            rng_from_array(self.rng, state["rng"])
        except (ValueError, TypeError, KeyError) as exc:
            raise TrainnetError(f"data reader state: bad random generator state ({exc})") from None
        self.perm, self.cursor = perm.copy(), cursor
        self.epoch = int(np.asarray(state["epoch"]).reshape(-1)[0])
