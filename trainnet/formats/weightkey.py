"""The name of a parameter blob in weight files and solver states: ``layer.index``.

``conv1.0`` is conv1's weights, ``conv1.1`` its bias.  A layer name may itself hold dots, so a
key is split at its last one.
"""

from __future__ import annotations

import re

from trainnet.errors import TrainnetError

KEY = re.compile(r"(.+)\.([0-9]+)")


def weight_key(layer: str, index: int | str) -> str:
    """The key of blob ``index`` of ``layer`` (an index as a file names it, or a number)."""
    return f"{layer}.{index}"


def key_layer(key: str) -> str:
    """The layer a key belongs to (``conv1`` of ``conv1.0``)."""
    return key.rpartition(".")[0]


def key_parts(key: str) -> tuple[str, str]:
    """(layer, index as written) of a key, split at its last dot."""
    layer, _, index = key.rpartition(".")
    return layer, index


def split_key(key: str) -> tuple[str, int]:
    """(layer, index) of a key known to be well formed."""
    layer, _, index = key.rpartition(".")
    return layer, int(index)


def parse_key(key: str, where: object) -> tuple[str, int]:
    """(layer, index) of a key read from a file; anything else is an error naming it."""
    match = KEY.fullmatch(key)
    if match is None:
        raise TrainnetError(f"{where}: key '{key}' is not a parameter blob's name (layer.index, "
                            "as conv1.0)")
    return match.group(1), int(match.group(2))
