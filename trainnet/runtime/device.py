"""Devices: where arrays live and which array module computes on them.

The CPU (NumPy) is the reference and always present.  ``get_device`` resolves the CLI's
``--device`` choice; ``auto`` means a GPU when the GPU backend is usable, else the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from trainnet.errors import TrainnetError


@dataclass(frozen=True)
class Device:
    kind: str          # "cpu" or "cuda"
    index: int = 0

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"

    @property
    def xp(self) -> ModuleType:
        return np

    def __str__(self) -> str:
        return self.kind if self.kind == "cpu" else f"cuda:{self.index}"


CPU = Device("cpu")


def get_device(spec: str = "cpu") -> Device:
    """``cpu``, ``auto``, ``cuda`` or ``cuda:N``."""
    spec = spec.strip().lower()
    if spec in ("cpu", "auto"):
        return CPU
    if spec == "cuda" or spec.startswith("cuda:"):
        raise TrainnetError(f"device '{spec}': this build of trainnet runs on the CPU only; "
                            "use --device cpu (the GPU backend is not part of it yet)")
    raise TrainnetError(f"unknown device '{spec}': use cpu, auto, cuda or cuda:N")
