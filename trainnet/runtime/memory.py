"""Will a plan fit?  The bytes a Net allocates for a plan, checked against the memory free on its
device before anything is allocated.

Without the check a net too large for the machine (``batch_size: 60000`` on LeNet wants 17 GiB,
``num_output: 1000000000`` 150 GiB) dies in a MemoryError traceback while the Net is built, or,
where Linux overcommits, is killed later as its pages are touched.  The plan knows every byte
beforehand, so the error can name them: the plan's figure, its largest blob and that blob's
layer, and how much is free.

What is free: on the CPU, ``MemAvailable`` of /proc/meminfo (else the free pages ``sysconf``
reports), lowered to what a cgroup memory limit leaves; on a GPU, the device's free memory plus
what CuPy's pool holds unused.  ``TRAINNET_MEMORY_AVAILABLE`` (bytes, or with a K/M/G/T suffix)
overrides both, for tests and for a user who wants a net held under a budget.  A figure that
cannot be read skips the check (an allocation failure is then still one line, in the CLI).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from trainnet.errors import ConfigError, TrainnetError
from trainnet.plan.params import aligned
from trainnet.plan.text import human_bytes

ENV = "TRAINNET_MEMORY_AVAILABLE"
BEYOND_ANY_MACHINE = 2**60  # bytes: refused even when the free figure cannot be read


@dataclass(frozen=True)
class Largest:
    """The largest single allocation of a plan: what it is, its layer step, shape and bytes."""

    what: str
    step: Any
    shape: tuple
    nbytes: int


def largest_blob(plan) -> Optional[Largest]:
    """The plan's largest blob: an activation, a layer's buffer (im2col columns ...) or a
    parameter blob, with the layer it belongs to."""
    best: Optional[Largest] = None

    def consider(what, step, shape, itemsize=4):
        nonlocal best
        nbytes = math.prod(int(d) for d in shape) * itemsize
        if best is None or nbytes > best.nbytes:
            best = Largest(what, step, tuple(shape), nbytes)

    for step in plan.steps:
        for top in step.tops:
            consider(f"top '{top}'", step, plan.blobs[top].shape)
        for name, region in step.buffers.items():
            consider(f"buffer '{name}'", step, region.shape, np.dtype(region.dtype).itemsize)
        for j, use in enumerate(step.params):
            consider(f"parameter {j}", step, plan.params[use.slot].shape)
    return best


def net_bytes(plan, shared=None, on_gpu: bool = False) -> tuple[int, int, int]:
    """(activation bytes, parameter bytes, copies of the parameters) a Net allocates for
    ``plan``: its arena and shadow gradients, and the parameters that ``shared`` (a ParamStore
    the net borrows) does not already hold, as data and diff (and, on the CPU, the host array
    they are filled from)."""
    own = [s for s in plan.params if shared is None or s.key not in shared.index]
    elements = sum(aligned(s.count) for s in own)
    return plan.arena_bytes + 4 * plan.shadow_arena, 4 * elements, 2 if on_gpu else 3


def available_bytes(device) -> Optional[int]:
    """Bytes free for ``device`` now (None when that cannot be told)."""
    given = os.environ.get(ENV, "").strip()
    if given:
        return parse_bytes(given)
    return _gpu_free(device) if device.is_gpu else _host_available()


def parse_bytes(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    body = text.upper().removesuffix("IB").removesuffix("B")
    scale = units.get(body[-1:], 1)
    try:
        return int(float(body[:-1] if scale != 1 else body) * scale)
    except ValueError:
        raise TrainnetError(f"{ENV}={text!r}: give bytes, as 4000000000 or 4G") from None


def check_fits(plan, device, shared=None, available: Optional[int] = None) -> None:
    """Refuse ``plan`` on ``device`` when what a Net would allocate for it exceeds ``available``
    (default: ``available_bytes(device)``); ``shared``: the ParamStore the net would borrow."""
    activations, params, copies = net_bytes(plan, shared, device.is_gpu)
    need = activations + copies * params
    free = available_bytes(device) if available is None else available
    if free is None:
        if need <= BEYOND_ANY_MACHINE:
            return
        free = BEYOND_ANY_MACHINE
    if need <= free:
        return
    big = largest_blob(plan)
    where = "the GPU" if device.is_gpu else "this machine"
    held = "data, gradient" + ("" if device.is_gpu else " and the copy that fills them")
    parts = f"parameters {human_bytes(params)} {copies} times: {held}" if params else "no parameters"
    message = (f"net '{plan.net_name}' ({plan.phase}) needs {human_bytes(need)} (activations "
               f"{human_bytes(activations)}, {parts}) but {where} has {human_bytes(free)} "
               "available")
    if big is None:
        raise TrainnetError(message)
    shape = "x".join(map(str, big.shape)) or "scalar"
    message += (f"; its largest blob is this layer's {big.what}, {shape} "
                f"({human_bytes(big.nbytes)}): lower the batch size or the layer sizes")
    cfg = big.step.cfg
    raise ConfigError(message, file=plan.file, line=cfg.line, layer=cfg.name, layer_type=cfg.type)


def _host_available() -> Optional[int]:
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = cgroup_room()
    return free if limit is None else min(free, limit)


def cgroup_room(root: Path = Path("/sys/fs/cgroup")) -> Optional[int]:
    """What a cgroup memory limit leaves (v2, then v1), or None without one.  The usage counts
    the page cache, which the kernel reclaims before it fails an allocation: its inactive file
    pages are not counted as used (as docker and Kubernetes count a container's working set)."""
    for folder, limit_name, usage_name, cache_key in (
            (root, "memory.max", "memory.current", "inactive_file"),
            (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
             "total_inactive_file")):
        try:
            limit = Path(folder, limit_name).read_text().strip()
            if limit == "max" or int(limit) >= 2**60:
                return None
            used = int(Path(folder, usage_name).read_text().strip())
        except (OSError, ValueError):
            continue
        return max(0, int(limit) - max(0, used - _stat(Path(folder, "memory.stat"), cache_key)))
    return None


def _stat(path: Path, key: str) -> int:
    """One field of a cgroup's memory.stat (0 when it cannot be read)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _gpu_free(device) -> Optional[int]:
    backend = device.backend
    free = getattr(backend, "free_memory", None)
    if callable(free):
        return free()
    try:
        cp = backend.cp
        with cp.cuda.Device(backend.index):
            free_now, _ = cp.cuda.runtime.memGetInfo()
        return int(free_now) + int(cp.get_default_memory_pool().free_bytes())
    except Exception:  # an emulated backend, no driver: the check is skipped
        return None
