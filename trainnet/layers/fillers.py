"""Parameter initialisation with Caffe's fillers, drawn from the net's random generator."""

from __future__ import annotations

import math

import numpy as np

from trainnet.netcfg.common import FillerParameter


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """Caffe's fan_in = count / shape[0], fan_out = count / shape[1]."""
    count = math.prod(shape)
    fan_in = count / shape[0] if shape and shape[0] else count
    fan_out = count / shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _norm(filler: FillerParameter, shape) -> float:
    fan_in, fan_out = _fans(shape)
    return {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[filler.variance_norm]


class InitialValues(FillerParameter):
    """Values a layer computed when it was set up (a Python layer's ``setup``), copied into the
    parameter arena once, when it is filled.  Held as float32 bytes, so that the filler stays
    immutable and comparable like every other."""

    values: bytes = b""


def check(filler: FillerParameter, shape: tuple[int, ...]) -> str | None:
    """Why ``filler`` cannot fill a blob of ``shape``, or None (checked when a net compiles)."""
    if filler.type == "bilinear" and (len(shape) != 4 or shape[2] != shape[3]):
        return f"the bilinear filler needs a 4-D blob with square kernels, got {shape}"
    if filler.type in ("xavier", "msra") and math.prod(shape) and 0 in _fans(shape):
        return f"the {filler.type} filler needs a blob with fans > 0, got {shape}"
    return None


def fill(out: np.ndarray, filler: FillerParameter, rng: np.random.Generator) -> None:
    """Fill ``out`` in place as Caffe's filler of that type would."""
    shape = out.shape
    if isinstance(filler, InitialValues):
        out[...] = np.frombuffer(filler.values, np.float32).reshape(shape)
        return
    kind = filler.type
    problem = check(filler, shape)
    if problem:
        raise ValueError(problem)
    if out.size == 0:
        return
    if kind == "constant":
        out[...] = filler.value
    elif kind == "uniform":
        out[...] = rng.uniform(filler.min, filler.max, size=shape)
    elif kind == "gaussian":
        out[...] = rng.normal(filler.mean, filler.std, size=shape)
        if filler.sparse >= 0:
            # Caffe keeps each weight with probability sparse / shape[0]
            keep = rng.random(size=shape) < filler.sparse / shape[0]
            out *= keep
    elif kind == "xavier":
        scale = math.sqrt(3.0 / _norm(filler, shape))
        out[...] = rng.uniform(-scale, scale, size=shape)
    elif kind == "msra":
        out[...] = rng.normal(0.0, math.sqrt(2.0 / _norm(filler, shape)), size=shape)
    elif kind == "positive_unitball":
        v = rng.uniform(0.0, 1.0, size=shape).reshape(shape[0], -1)
        v /= v.sum(axis=1, keepdims=True)
        out[...] = v.reshape(shape)
    elif kind == "bilinear":
        # Caffe's BilinearFiller: f = ceil(k / 2), c = (k - 1) / (2 f)
        k = shape[3]
        f = math.ceil(k / 2.0)
        c = (k - 1) / (2.0 * f)
        ramp = 1 - np.abs(np.arange(k) / f - c)
        out[...] = np.outer(ramp, ramp)
    else:  # the schema admits only the kinds above
        raise ValueError(f"unknown filler type {kind!r}")
