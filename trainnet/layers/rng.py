"""Philox4x32-10 in NumPy: the counter-based generator of ``common.cuh``, bit for bit.

A counter-based generator maps (counter, key) to random bits with no sequential state, so
element i of pass c draws the same number on the CPU and on the GPU, in any order and on any
number of threads.  Stochastic layers (Dropout) number their elements and passes and call
``fill_uniform``; their kernels call ``philox4x32`` and ``uniform24`` from ``common.cuh``.

Words are held in uint64 arrays whose values stay below 2**32, so a 32x32-bit product is one
exact uint64 multiply.  Everything is vectorized; ``PhiloxWork`` bounds the scratch memory and
lets a caller that draws every pass allocate it once.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)   # round multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85                         # key schedule (Weyl) increments
ROUNDS = 10
CHUNK = 1 << 14  # elements per block of fill_uniform's scratch (about 1 MB)


def _lo(v: int) -> int:
    return int(v) & 0xFFFFFFFF


def _hi(v: int) -> int:
    return (int(v) >> 32) & 0xFFFFFFFF


def philox4x32_rounds(x: np.ndarray, p: np.ndarray, k0: int, k1: int) -> None:
    """Ten rounds in place on ``x`` (4, m) uint64, with ``p`` (2, m) uint64 as scratch."""
    x0, x1, x2, x3 = x
    p0, p1 = p
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        np.multiply(x0, M0, out=p0)
        np.multiply(x2, M1, out=p1)
        np.right_shift(p1, SHIFT32, out=x0)      # x0' = hi(M1 x2) ^ x1 ^ k0
        x0 ^= x1
        x0 ^= np.uint64(k0)
        np.bitwise_and(p1, MASK32, out=x1)       # x1' = lo(M1 x2)
        np.right_shift(p0, SHIFT32, out=x2)      # x2' = hi(M0 x0) ^ x3 ^ k1
        x2 ^= x3
        x2 ^= np.uint64(k1)
        np.bitwise_and(p0, MASK32, out=x3)       # x3' = lo(M0 x0)


def philox4x32_block(c0, c1, c2, c3, k0: int, k1: int) -> np.ndarray:
    """All four output words, shape (4,) + the broadcast shape of the counter words."""
    words = np.broadcast_arrays(*(np.asarray(c, dtype=np.uint64) for c in (c0, c1, c2, c3)))
    x = np.stack([w.reshape(-1) for w in words]) & MASK32
    philox4x32_rounds(x, np.empty((2, x.shape[1]), np.uint64), _lo(k0), _lo(k1))
    return x.astype(np.uint32).reshape((4,) + words[0].shape)


def philox4x32(c0, c1, c2, c3, k0: int, k1: int) -> np.ndarray:
    """The first output word for counter (c0, c1, c2, c3) and key (k0, k1), as uint32: what
    ``philox4x32`` in ``common.cuh`` returns.  The counter words may be arrays (broadcast)."""
    return philox4x32_block(c0, c1, c2, c3, k0, k1)[0]


def uniform24(bits) -> np.ndarray:
    """A float32 in [0, 1) from the top 24 bits (exact, as ``uniform24`` in ``common.cuh``)."""
    return (np.asarray(bits, np.uint32) >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


class PhiloxWork:
    """Scratch for ``fill_uniform``: a block of element numbers and the generator's words."""

    def __init__(self, size: int = CHUNK):
        size = max(1, min(int(size), CHUNK))
        self.index = np.arange(size, dtype=np.uint64)
        self.i = np.empty(size, np.uint64)
        self.x = np.empty((4, size), np.uint64)
        self.p = np.empty((2, size), np.uint64)


def fill_uniform(out: np.ndarray, counter: int, key: int, work: Optional[PhiloxWork] = None) -> None:
    """``out.flat[i] = uniform24(philox4x32(lo(i), hi(i), lo(counter), hi(counter), lo(key),
    hi(key)))``: one pass's draws, element i numbered in C order.  ``out`` is C-contiguous."""
    flat = out.reshape(-1)
    work = work or PhiloxWork(flat.size)
    size = len(work.index)
    k0, k1 = _lo(key), _hi(key)
    for start in range(0, flat.size, size):
        m = min(size, flat.size - start)
        i, x, p = work.i[:m], work.x[:, :m], work.p[:, :m]
        np.add(work.index[:m], np.uint64(start), out=i)
        np.bitwise_and(i, MASK32, out=x[0])
        np.right_shift(i, SHIFT32, out=x[1])
        x[2].fill(_lo(counter))
        x[3].fill(_hi(counter))
        philox4x32_rounds(x, p, k0, k1)
        x0 = x[0]
        x0 >>= np.uint64(8)                     # uniform24: the top 24 bits, times 2**-24
        np.multiply(x0, 2.0**-24, out=flat[start:start + m], casting="unsafe")
