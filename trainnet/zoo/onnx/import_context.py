"""What an ONNX op's import handler sees: the folded constants, every tensor's shape, the layers
and weights written so far, and the names the net uses for ONNX's tensors and nodes.

Handlers register by the exact ONNX op type (``@HANDLERS.register("Conv")``) and receive the
context, the node and a label naming it for errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.weightkey import weight_key
from trainnet.registry import Registry
from trainnet.zoo.onnx.common import require_onnx

HANDLERS = Registry("ONNX op")
FIXED = {"lr_mult": 0.0, "decay_mult": 0.0}  # a blob that holds a conversion constant


def node_label(node, index: int) -> str:
    """How an error names a node: its name, or its op type and index in the graph."""
    return f"node '{node.name}' ({node.op_type})" if node.name else \
        f"node {index} ({node.op_type})"


def sanitise(name: str, fallback: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_.") if name else ""
    return text or fallback


def scalar(value) -> float:
    """A float32 value as the shortest decimal that reads back as it (0.2, not 0.200000003)."""
    return float(str(np.float32(np.asarray(value, np.float64).reshape(()))))


def attributes(node) -> dict[str, Any]:
    get = require_onnx().helper.get_attribute_value
    return {a.name: get(a) for a in node.attribute}


@dataclass
class PendingPad:
    """A zero Pad waiting to fold into the Conv or pooling that reads its output."""

    source: str                      # the Pad's input tensor
    pads: tuple[int, int, int, int]  # (top, left, bottom, right)
    label: str


@dataclass
class Context:
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    consumers: dict[str, list]
    outputs: set[str]                                        # the graph's output tensors
    layers: list[dict] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tops: dict[str, str] = field(default_factory=dict)       # ONNX tensor -> blob name
    pending_pads: dict[str, PendingPad] = field(default_factory=dict)
    nonneg: set[str] = field(default_factory=set)            # tensors known to be >= 0
    skip: set[int] = field(default_factory=set)              # ids of nodes folded elsewhere
    folded: list[str] = field(default_factory=list)          # what was folded, for the notes
    _layer_names: set[str] = field(default_factory=set)
    _blob_names: set[str] = field(default_factory=set)

    # --- tensors ----------------------------------------------------------------------------
    def const(self, name: str) -> Optional[np.ndarray]:
        return self.consts.get(name) if name else None

    def shape(self, name: str, label: str) -> tuple[int, ...]:
        if name not in self.shapes:
            raise TrainnetError(f"{label}: the shape of '{name}' is not known after shape "
                                "inference")
        return self.shapes[name]

    def bottom(self, name: str, label: str) -> str:
        """The blob an activation input reads; a constant or an unfolded Pad here is refused."""
        if name in self.pending_pads:
            pad = self.pending_pads[name]
            raise TrainnetError(f"{pad.label}: a Pad folds only into a Conv, AveragePool or "
                                f"MaxPool that reads it; {label} reads it")
        if name in self.consts:
            raise TrainnetError(f"{label}: input '{name}' is a constant where trainnet needs "
                                "an activation")
        if name not in self.tops:
            raise TrainnetError(f"{label}: input '{name}' is produced by no node")
        return self.tops[name]

    def alias(self, onnx_name: str, blob: str) -> None:
        """``onnx_name`` is the same blob as ``blob`` (Identity, inference Dropout)."""
        self.tops[onnx_name] = blob

    def top(self, onnx_name: str) -> str:
        """A new blob for an ONNX output tensor, named after it."""
        blob = self._unique(sanitise(onnx_name, "blob"), self._blob_names)
        self.tops[onnx_name] = blob
        return blob

    # --- layers -----------------------------------------------------------------------------
    def layer_name(self, node, suffix: str = "") -> str:
        """A new layer's name, after the node's (or its op type's when it has none)."""
        base = sanitise(node.name, node.op_type.lower())
        return self._unique(base + suffix, self._layer_names)

    def unique_layer(self, base: str) -> str:
        return self._unique(base, self._layer_names)

    def blob(self, base: str) -> str:
        """A new blob that no ONNX tensor names (a step inside a node's layers)."""
        return self._unique(sanitise(base, "blob"), self._blob_names)

    def add_layer(self, name: str, type_: str, bottoms: list[str], tops: list[str],
                  params: Optional[dict] = None, blobs: tuple = (), fixed: bool = False) -> str:
        """Append a layer (its blobs as float32 weights ``name.i``); returns its name."""
        layer = {"name": name, "type": type_, "bottom": list(bottoms), "top": list(tops)}
        if fixed:
            layer["param"] = [dict(FIXED) for _ in blobs]
        layer.update(params or {})
        self.layers.append(layer)
        for i, blob in enumerate(blobs):
            self.weights[weight_key(name, i)] = np.ascontiguousarray(blob, dtype=np.float32)
        return name

    def _unique(self, base: str, taken: set[str]) -> str:
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        return name
