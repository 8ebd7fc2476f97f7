"""The CPU passes' one thread pool: the layers whose NumPy work comes in independent blocks
(depthwise convolution's blocks, pooling's chunks of planes) share those blocks among it.
NumPy lets go of the GIL in its loops, so the threads run at once.

The count is ``OMP_NUM_THREADS`` (which ``--threads`` sets), else the CPUs this process may
run on; it is read once.  The pool is made on first use and reused; with one thread there is
none, and the caller's thread does every block.  The caller's thread always takes share 0, so
the pool holds one thread fewer than the count.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor


@functools.cache
def count() -> int:
    """The CPU passes' threads: ``OMP_NUM_THREADS``, else the CPUs."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every CPU
    return len(affinity(0)) if affinity else os.cpu_count() or 1


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(count() - 1, thread_name_prefix="trainnet-cpu")


def shares(blocks: int) -> int:
    """How many threads share ``blocks`` blocks: scratch per thread needs this many slices."""
    return max(1, min(count(), blocks))


def each(work, blocks: list, most: int | None = None) -> None:
    """``work(blocks[k::n], k)`` for each share k < n = ``shares(len(blocks))`` (at most
    ``most``); share 0 runs on the caller's thread.  Returns once every share is done; a share's
    error is raised."""
    n = min(shares(len(blocks)), most or len(blocks) or 1)
    if n == 1:
        work(blocks, 0)
        return
    done = [_pool().submit(work, blocks[k::n], k) for k in range(1, n)]
    try:
        work(blocks[0::n], 0)
    finally:
        for future in done:
            future.result()
