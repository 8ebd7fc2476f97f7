"""Pass 2: insert a Split after every blob that several layers consume.

Each consumer then reads its own copy, and the Split's backward sums their gradients, so
no layer ever has to accumulate into a shared diff.  A loss output that another layer also
reads counts as one more consumer, as in Caffe.
"""

from __future__ import annotations

from trainnet.layers.base import layer_class
from trainnet.netcfg.net import LayerConfig


def split_top_name(blob: str, producer: str, k: int) -> str:
    return f"{blob}_{producer}_split_{k}"


def insert_splits(layers: list[LayerConfig], loss_weighted: set[tuple[int, int]]) -> list[LayerConfig]:
    """``loss_weighted`` holds (layer index, top index) pairs that carry a loss weight."""
    producer: dict[str, tuple[int, int]] = {}      # blob -> (layer, top) that last wrote it
    uses: dict[tuple[int, int], list[tuple[int, int]]] = {}  # producing top -> [(layer, bottom)]
    for i, layer in enumerate(layers):
        for j, b in enumerate(layer.bottom):
            if b in producer:
                uses.setdefault(producer[b], []).append((i, j))
        for j, t in enumerate(layer.top):
            producer[t] = (i, j)

    def consumers(key):
        return len(uses.get(key, [])) + (1 if key in loss_weighted else 0)

    renamed: dict[tuple[int, int], str] = {}   # (layer, bottom) -> split top to read
    splits_after: dict[int, list[LayerConfig]] = {}
    Split = layer_class("Split")
    for key, readers in uses.items():
        if consumers(key) <= 1:
            continue
        i, j = key
        blob = layers[i].top[j]
        tops = [split_top_name(blob, layers[i].name, k) for k in range(consumers(key))]
        for k, reader in enumerate(readers):
            renamed[reader] = tops[k]
        weights = [0.0] * len(tops)
        if key in loss_weighted:
            weights[-1] = loss_weights(layers[i])[j]  # the loss rides on the last copy
        splits_after.setdefault(i, []).append(LayerConfig(
            name=f"{blob}_{layers[i].name}_split", type="Split", bottom=[blob], top=tops,
            params=Split.Params(), line=layers[i].line,
            loss_weight=weights if key in loss_weighted else []))

    out: list[LayerConfig] = []
    for i, layer in enumerate(layers):
        bottoms = [renamed.get((i, j), b) for j, b in enumerate(layer.bottom)]
        if bottoms != layer.bottom:
            layer = layer.model_copy(update={"bottom": bottoms})
        if any((i, j) in loss_weighted and consumers((i, j)) > 1 for j in range(len(layer.top))):
            # the loss weight now rides on the split's last top; this top feeds the split
            weights = [0.0 if consumers((i, j)) > 1 else w for j, w in
                       enumerate(loss_weights(layer))]
            layer = layer.model_copy(update={"loss_weight": weights})
        out.append(layer)
        out.extend(splits_after.get(i, []))
    return out


def loss_weights(layer: LayerConfig) -> list[float]:
    """Caffe's default: a loss layer's first top has weight 1, everything else 0."""
    if layer.loss_weight:
        return list(layer.loss_weight)
    cls = layer_class(layer.type)
    return [1.0 if (cls.is_loss and j == 0) else 0.0 for j in range(len(layer.top))]


def loss_weighted_tops(layers: list[LayerConfig]) -> set[tuple[int, int]]:
    return {(i, j) for i, l in enumerate(layers) for j, w in enumerate(loss_weights(l)) if w != 0}
