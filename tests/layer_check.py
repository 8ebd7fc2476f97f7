"""The one gradient checker and layer-test helpers every layer test uses.

``build(type, params, bottom_shapes)`` makes a layer from its YAML-style fields;
``run_forward`` binds fresh arrays and runs it; ``check_gradients`` is the public checker,
``trainnet.runtime.gradcheck.check_gradient`` (central differences in float64 on the CPU, for
every bottom that takes a gradient and every parameter blob), which users run on their Python
layers too.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from trainnet.layers.base import Layer, StepIO, layer_class
from trainnet.runtime.device import CPU
from trainnet.runtime.gradcheck import check_gradient, make_io, make_params, step_blobs

check_gradients = check_gradient  # the name the layer tests use

__all__ = ["build", "check_gradient", "check_gradients", "make_io", "make_params", "run_forward",
           "step_blobs"]


def build(type_name: str, params: Optional[dict] = None, bottom_shapes: Sequence = (),
          phase: str = "TRAIN", name: str = "layer") -> Layer:
    cls = layer_class(type_name)
    return cls(name, cls.Params.model_validate(params or {}), phase, [tuple(s) for s in bottom_shapes])


def run_forward(layer: Layer, bottoms: list[np.ndarray], **kw) -> StepIO:
    io = make_io(layer, bottoms, **kw)
    layer.forward(io, CPU)
    return io
