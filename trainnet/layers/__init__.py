"""Layer types, one module each, registered by their Caffe type string."""

import importlib
import pkgutil

from trainnet.layers.base import Layer, StepIO, known_types, layer_class, register

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "fillers"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["Layer", "StepIO", "known_types", "layer_class", "register"]
