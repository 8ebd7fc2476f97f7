"""Pass 2: insert a Split after every blob that several layers consume.

Each consumer then reads its own copy, and the Split's backward sums their gradients, so
no layer ever has to accumulate into a shared diff.  A loss output that another layer also
reads counts as one more consumer, as in Caffe.

Names, copies and the loss follow Caffe's ``InsertSplits`` (insert_splits.cpp), so that blobs are
found by Caffe's names: top ``j`` of layer ``L`` holding blob ``b`` gets the split layer
``b_L_j_split`` with tops ``b_L_j_split_0``, ``b_L_j_split_1`` ...; the consumers take the copies in
net order; a loss output's weight rides on copy 0 and its consumers start at copy 1.  One
difference: Caffe counts only an explicit ``loss_weight`` as a use, trainnet a loss layer's
default weight too (else a consumer's gradient would overwrite the loss's).
"""

from __future__ import annotations

from trainnet.layers.base import layer_class
from trainnet.netcfg.net import LayerConfig


def split_layer_name(blob: str, producer: str, top_index: int) -> str:
    """Caffe's SplitLayerName."""
    return f"{blob}_{producer}_{top_index}_split"


def split_top_name(blob: str, producer: str, top_index: int, k: int) -> str:
    """Caffe's SplitBlobName: copy ``k`` of top ``top_index`` of layer ``producer``."""
    return f"{split_layer_name(blob, producer, top_index)}_{k}"


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
        tops = [split_top_name(blob, layers[i].name, j, k) for k in range(consumers(key))]
        first = 1 if key in loss_weighted else 0  # the loss rides on copy 0
        for k, reader in enumerate(readers, start=first):
            renamed[reader] = tops[k]
        weights = [0.0] * len(tops)
        if key in loss_weighted:
            weights[0] = loss_weights(layers[i])[j]
        splits_after.setdefault(i, []).append(LayerConfig(
            name=split_layer_name(blob, layers[i].name, j), type="Split", bottom=[blob], top=tops,
            params=Split.Params(), line=layers[i].line,
            loss_weight=weights if key in loss_weighted else []))

    out: list[LayerConfig] = []
    for i, layer in enumerate(layers):
        bottoms = [renamed.get((i, j), b) for j, b in enumerate(layer.bottom)]
        if bottoms != layer.bottom:
            layer = layer.model_copy(update={"bottom": bottoms})
        if any((i, j) in loss_weighted and consumers((i, j)) > 1 for j in range(len(layer.top))):
            # the loss weight now rides on the split's first top; this top feeds the split
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
