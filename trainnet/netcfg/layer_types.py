"""The layer types a net config is read and written against: the one place netcfg reaches them.

A layer type's parameters model, its Caffe parameter messages and its notes for Caffe live with
the layer (trainnet.layers, above netcfg in the data flow), so validating a layer's fields needs
its type's class.  Every lookup goes through here, by type string, at the time a config is read
or written; this module's two imports are the netcfg -> layers edge that tests/test_layering.py
still allows, until the registry is handed to netcfg from above (or the parameter models move
below it).
"""

from __future__ import annotations


def layer_class(type_name: str) -> type:
    """The class registered for ``type_name``; KeyError naming the known types otherwise."""
    from trainnet.layers.base import layer_class as lookup

    return lookup(type_name)


def registered() -> dict[str, type]:
    """Every registered layer type by its type string."""
    from trainnet.layers.base import LAYERS, known_types

    known_types()  # registers every layer module
    return LAYERS.entries
