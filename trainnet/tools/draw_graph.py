"""A net or a compiled plan as a graph of boxes and labelled arrows, ready to lay out or print.

A node is a layer (or a plan step); an edge carries one blob from the step that last wrote it to
a step that reads it, labelled with the blob's name and shape (and, for a plan, its memory).  A
layer running in place is a node on its blob's chain, as Caffe's draw_net draws it: the producer
points at it and it points at the blob's readers.  A blob that nothing reads after its last write
(a loss, an accuracy, a probability) ends in a small output node of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from trainnet.layers.base import known_types, layer_class
from trainnet.plan.plan import Plan
from trainnet.plan.text import compiler_notes, human_bytes

# The kinds a layer is coloured by, and their fill colours (Caffe's draw_net palette where it has
# one: convolution green, pooling orange, inner product purple).
COLOURS = {
    "data": "#9ecae1",
    "convolution": "#74c476",
    "inner product": "#bcbddc",
    "pooling": "#fdae6b",
    "activation": "#fdd0a2",
    "normalisation": "#c7e9c0",
    "loss": "#fc9272",
    "other": "#e0e0e0",
    "blob": "#ffffff",
}

_KIND_BY_TYPE = {
    "Convolution": "convolution", "Deconvolution": "convolution", "DepthwiseConvolution":
    "convolution", "InnerProduct": "inner product", "Embed": "inner product",
    "Pooling": "pooling", "SPP": "pooling",
    "BatchNorm": "normalisation", "LRN": "normalisation", "MVN": "normalisation",
    "Normalize": "normalisation", "Scale": "normalisation", "Bias": "normalisation",
    "ReLU": "activation", "PReLU": "activation", "ELU": "activation", "Sigmoid": "activation",
    "TanH": "activation", "AbsVal": "activation", "BNLL": "activation", "Power": "activation",
    "Exp": "activation", "Log": "activation", "Threshold": "activation", "Swish": "activation",
    "Clip": "activation", "Softmax": "activation", "Dropout": "activation",
}

# The parameters a node shows when the config sets them, in this order, with short names.
KEY_PARAMS = (("num_output", "out"), ("kernel_size", "kernel"), ("kernel_h", "kernel_h"),
              ("kernel_w", "kernel_w"), ("stride", "stride"), ("pad", "pad"),
              ("dilation", "dilation"), ("group", "group"), ("pool", "pool"),
              ("global_pooling", "global"), ("local_size", "size"), ("operation", "op"),
              ("dropout_ratio", "ratio"), ("axis", "axis"), ("batch_size", "batch"))


@dataclass
class Node:
    id: str
    lines: list[str]       # the first is the name, drawn bold
    kind: str              # a key of COLOURS
    dashed: bool = False   # added by the compiler (an inserted split)
    output: bool = False   # a net output: a blob, not a layer


@dataclass
class Edge:
    src: str
    dst: str
    lines: list[str] = field(default_factory=list)


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    edges: list[Edge]
    rankdir: str = "LR"


def layer_kind(type_name: str) -> str:
    """The colour kind of a layer type: from the class's declared properties (a data source, a
    loss) first, then from the small table above; an unknown type is "other"."""
    cls = layer_class(type_name) if type_name in known_types() else None
    if cls is not None and cls.is_data:
        return "data"
    if (cls is not None and cls.is_loss) or type_name.endswith("Loss"):
        return "loss"
    return _KIND_BY_TYPE.get(type_name, "other")


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_value(v) for v in value)
    if hasattr(value, "name") and not isinstance(value, str):  # an enum
        return str(value.name)
    return str(value)


def key_params(params) -> str:
    """The key parameters a config sets for a layer, e.g. ``out 20, kernel 5, stride 1``."""
    given = getattr(params, "model_fields_set", set())
    shown = []
    for key, short in KEY_PARAMS:
        value = getattr(params, key, None)
        if key in given and value not in (None, [], ()):
            shown.append(f"{short} {_value(value)}")
    return ", ".join(shown)


def shape_text(shape) -> str:
    return "x".join(str(int(d)) for d in shape) or "scalar"


@dataclass
class _Item:
    """One node's worth of a layer or a step, before the edges are drawn."""

    lines: list[str]
    kind: str
    bottoms: list[str]
    tops: list[str]
    dashed: bool = False


def chain_graph(name: str, items: list[_Item], label: Callable[[str], list[str]],
                rankdir: str = "LR") -> Graph:
    """Nodes for ``items`` in order; an edge from the last writer of each bottom to its reader,
    labelled by ``label(blob)``; an output node for each blob nothing reads after its last write."""
    nodes, edges = [], []
    writer: dict[str, str] = {}
    unread: dict[str, str] = {}  # blob -> the node that wrote it, until something reads it
    for i, item in enumerate(items):
        node_id = f"n{i}"
        nodes.append(Node(node_id, item.lines, item.kind, dashed=item.dashed))
        for bottom in dict.fromkeys(item.bottoms):
            if bottom in writer:
                edges.append(Edge(writer[bottom], node_id, label(bottom)))
                unread.pop(bottom, None)
        for top in item.tops:
            writer[top] = node_id
            unread[top] = node_id
    data_nodes = {n.id for n in nodes if n.kind == "data"}
    for j, (blob, src) in enumerate(unread.items()):
        if src in data_nodes:
            continue  # data nothing reads (a label in a deploy-like net) is not an output
        out_id = f"out{j}"
        nodes.append(Node(out_id, [blob], "blob", output=True))
        edges.append(Edge(src, out_id, label(blob)))
    return Graph(name or "net", nodes, edges, rankdir)


def net_graph(plan: Plan, rankdir: str = "LR") -> Graph:
    """The net as its config describes it, with the shapes shape inference gave: compile it with
    ``in_place=False, fuse=False`` so that every layer keeps its own step (the compiler's splits
    are left out here; ``plan_graph`` shows them)."""
    items, split_of = [], {}
    for s in plan.steps:
        if s.inserted:  # its tops stand for its bottom again
            split_of.update((t, split_of.get(s.bottoms[0], s.bottoms[0])) for t in s.tops)
            continue
        lines = [s.name, s.type] + [p for p in [key_params(s.cfg.params)] if p]
        bottoms = [split_of.get(b, b) for b in s.bottoms]
        items.append(_Item(lines, layer_kind(s.type), bottoms, s.tops))
    return chain_graph(plan.net_name, items, lambda b: [b, shape_text(plan.blob(b).shape)], rankdir)


def config_graph(cfg, rankdir: str = "LR", layers=None) -> Graph:
    """The layers of ``cfg`` (every one whatever its phase unless ``layers`` names them) without
    shapes: pycaffe's draw with phase=None, or a net that cannot compile (a missing data file)."""
    items = []
    for layer in cfg.layer if layers is None else layers:
        phases = sorted({r.phase for r in layer.include if getattr(r, "phase", None)})
        lines = [layer.name, layer.type] + [p for p in [key_params(layer.params)] if p]
        lines += [f"phase {', '.join(_value(p) for p in phases)}"] if phases else []
        items.append(_Item(lines, layer_kind(layer.type), layer.bottom, layer.top))
    return chain_graph(cfg.name, items, lambda b: [b], rankdir)


def _step_lines(plan: Plan, s) -> list[str]:
    lines = [s.name, s.type, *compiler_notes(s)]
    params = key_params(s.cfg.params)
    return lines + ([params] if params else [])


def _region_text(plan: Plan, blob: str) -> list[str]:
    b = plan.blob(blob)
    lines = [blob, shape_text(b.shape)]
    for what, region in (("data", b.data), ("diff", b.diff)):
        if region is not None:
            lines.append(f"{what} @{region.offset:,} {human_bytes(region.nbytes)}")
    return lines


def plan_graph(plan: Plan, rankdir: str = "LR") -> Graph:
    """The compiled plan: every step (inserted splits dashed, in-place and fused steps noted) and
    each blob's memory region (byte offset in the activation arena and size) on its edges."""
    items = [_Item(_step_lines(plan, s), layer_kind(s.type), s.bottoms, s.tops, dashed=s.inserted)
             for s in plan.steps]
    title = f"{plan.net_name} ({plan.phase}, arena {human_bytes(plan.arena_bytes)})"
    return chain_graph(title, items, lambda b: _region_text(plan, b), rankdir)


def node_by_id(graph: Graph) -> dict[str, Node]:
    return {n.id: n for n in graph.nodes}


def find(graph: Graph, name: str) -> Optional[Node]:
    return next((n for n in graph.nodes if n.lines[0] == name), None)
