"""The layer types a net config is read and written against, by their Caffe type string.

A layer type's parameters model, its Caffe parameter messages and its notes for Caffe live with
the layer, in trainnet.layers, above netcfg in the data flow.  So netcfg owns the lookup and the
layers fill it from above: ``trainnet.layers.register`` adds each layer class here when its module
is imported, and importing trainnet.layers imports every layer module.  Whoever reads or writes a
net config imports trainnet.layers first; the command line, the plan, the runtime, the solver and
the zoo all do.
"""

from __future__ import annotations

from trainnet.registry import Registry

LAYER_TYPES = Registry("layer type")

NOT_LOADED = ("no layer types are registered: import trainnet.layers (it registers every layer "
              "type) before reading or writing a net config")


def registered() -> dict[str, type]:
    """Every registered layer type by its type string; a RuntimeError when none is (trainnet.layers
    was never imported), rather than calling every type unknown."""
    if not LAYER_TYPES.entries:
        raise RuntimeError(NOT_LOADED)
    return LAYER_TYPES.entries


def layer_class(type_name: str) -> type:
    """The class registered for ``type_name``; KeyError naming the known types otherwise."""
    registered()
    return LAYER_TYPES[type_name]
