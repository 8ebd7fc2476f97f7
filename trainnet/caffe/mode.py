"""pycaffe's process-wide settings: the device nets and solvers are made on, and the seed of
the generator their fillers (and Dropout's keys) draw from.  Like Caffe's, a setting applies to
nets and solvers made after it."""

from __future__ import annotations

from typing import Optional

import numpy as np

from trainnet.runtime.device import Device, get_device

TRAIN, TEST = 0, 1  # pycaffe's caffe.TRAIN and caffe.TEST
PHASES = {TRAIN: "TRAIN", TEST: "TEST"}

_settings = {"gpu": False, "index": 0}
_rng: list[Optional[np.random.Generator]] = [None]


def set_mode_cpu() -> None:
    _settings["gpu"] = False


def set_mode_gpu() -> None:
    """Nets and solvers made from now on run on the GPU chosen by ``set_device`` (0 by
    default); one is needed when the first of them is made, not now."""
    _settings["gpu"] = True


def set_device(index: int) -> None:
    _settings["index"] = int(index)


def set_random_seed(seed: int) -> None:
    """Fillers of nets made from now on draw from a generator seeded with ``seed``."""
    _rng[0] = np.random.default_rng(int(seed))


def device() -> Device:
    """The device of the current mode (a clear error where no GPU is usable)."""
    return get_device(f"cuda:{_settings['index']}") if _settings["gpu"] else get_device("cpu")


def rng() -> np.random.Generator:
    """The generator seeded by ``set_random_seed``, else a fresh one from the OS's entropy."""
    return _rng[0] if _rng[0] is not None else np.random.default_rng()


def phase_name(phase) -> str:
    """``caffe.TRAIN``/``caffe.TEST`` (or the strings) as the compiler's phase name."""
    if isinstance(phase, str) and phase.upper() in ("TRAIN", "TEST"):
        return phase.upper()
    if phase in PHASES:
        return PHASES[phase]
    raise ValueError(f"phase must be caffe.TRAIN or caffe.TEST, got {phase!r}")
