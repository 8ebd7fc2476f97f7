"""A small layered layout for pictures when Graphviz is not there.

Nodes are ranked by their longest path from a source (left to right for ``rankdir=LR``, top to
bottom for ``TB``), ordered within a rank by two barycentre sweeps (down, then up) so that edges
cross less, and sized by their text.  Edges are straight lines from box border to box border with
their label at the middle: plain, but every layer, blob and shape is there and readable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from trainnet.tools.draw_graph import Edge, Graph, Node

PAD = 8          # inside a box, around its text
NODE_GAP = 24    # between neighbours in a rank
RANK_GAP = 40    # between ranks, besides the room the edge labels need
MARGIN = 16
DUMMY = 12       # the room a bend point takes in its rank
TITLE = 24       # the band at the top holding the graph's name


@dataclass(frozen=True)
class Box:
    x: float  # top-left corner
    y: float
    w: float
    h: float

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2


@dataclass(frozen=True)
class Line:
    points: list[tuple[float, float]]   # from the source's border to the arrowhead's tip
    label_at: tuple[float, float]
    lines: list[str]

    @property
    def start(self) -> tuple[float, float]:
        return self.points[0]

    @property
    def end(self) -> tuple[float, float]:
        return self.points[-1]


@dataclass
class Layout:
    width: float
    height: float
    boxes: dict[str, Box]
    lines: list[Line]
    line_height: float


def ranks(graph: Graph) -> dict[str, int]:
    """Each node's longest path from a source (the graph is acyclic: edges follow step order)."""
    rank = {n.id: 0 for n in graph.nodes}
    for _ in range(len(graph.nodes)):
        changed = False
        for e in graph.edges:
            if rank[e.dst] < rank[e.src] + 1:
                rank[e.dst], changed = rank[e.src] + 1, True
        if not changed:
            break
    return rank


def order(graph: Graph, rank: dict[str, int]) -> list[list[str]]:
    """The nodes of each rank, ordered by the mean position of their neighbours in the rank
    before (a downward sweep), then in the rank after (an upward one)."""
    layers: list[list[str]] = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for n in graph.nodes:
        layers[rank[n.id]].append(n.id)
    ins: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    outs: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        ins[e.dst].append(e.src)
        outs[e.src].append(e.dst)

    def sweep(indices, neighbours):
        for i in indices:
            pos = {v: k for layer in layers for k, v in enumerate(layer)}
            keyed = [(sum(pos[m] for m in neighbours[v]) / len(neighbours[v])
                      if neighbours[v] else pos[v], k, v) for k, v in enumerate(layers[i])]
            layers[i] = [v for _, _, v in sorted(keyed)]

    sweep(range(1, len(layers)), ins)
    sweep(range(len(layers) - 2, -1, -1), outs)
    return layers


def _with_bends(graph: Graph, rank: dict[str, int]) -> tuple[Graph, list[list[str]]]:
    """``graph`` with an edge that spans several ranks cut into one segment per rank through
    bend points (small invisible nodes, added to ``rank``), so that it runs between the boxes
    of the ranks it crosses; and each edge's path of node ids."""
    nodes, edges, paths = list(graph.nodes), [], []
    for k, e in enumerate(graph.edges):
        path = [e.src] + [f"bend{k}.{r}" for r in range(rank[e.src] + 1, rank[e.dst])] + [e.dst]
        for r, v in enumerate(path[1:-1], start=rank[e.src] + 1):
            rank[v] = r
            nodes.append(Node(v, [""], "blob"))
        edges += [Edge(a, b) for a, b in zip(path, path[1:])]
        paths.append(path)
    return Graph(graph.name, nodes, edges, graph.rankdir), paths


def _label_centre(points, lines: list[str], across: int, width_of, line_height: float):
    """Where an edge's label goes: beside the middle of its first segment (right of it when the
    ranks run downwards, above it when they run across), off the line."""
    x, y = ((a + b) / 2 for a, b in zip(points[0], points[1]))
    if across == 0:
        return x + max((width_of(t) for t in lines), default=0) / 2 + 6, y
    return x, y - len(lines) * line_height / 2 - 3


def _mirrored(boxes: dict[str, Box], across: int) -> dict[str, Box]:
    """The boxes reflected across the ranks (bottom to top for BT, right to left for RL)."""
    if across == 0:
        lo, hi = min(b.y for b in boxes.values()), max(b.y + b.h for b in boxes.values())
        return {v: Box(b.x, lo + hi - b.y - b.h, b.w, b.h) for v, b in boxes.items()}
    lo, hi = min(b.x for b in boxes.values()), max(b.x + b.w for b in boxes.values())
    return {v: Box(lo + hi - b.x - b.w, b.y, b.w, b.h) for v, b in boxes.items()}


def _clip(box: Box, towards: tuple[float, float]) -> tuple[float, float]:
    """Where the segment from the box's centre towards a point leaves the box."""
    cx, cy = box.centre
    dx, dy = towards[0] - cx, towards[1] - cy
    if dx == 0 and dy == 0:
        return cx, cy
    scale = min(box.w / 2 / abs(dx) if dx else float("inf"), box.h / 2 / abs(dy) if dy else float("inf"))
    return cx + dx * scale, cy + dy * scale


def layout(graph: Graph, width_of: Callable[[str], float], line_height: float) -> Layout:
    """Place every node and edge of ``graph``; ``width_of(text)`` measures one line of text."""
    size = {n.id: (max(width_of(t) for t in n.lines) + 2 * PAD, len(n.lines) * line_height + 2 * PAD)
            for n in graph.nodes}
    rank = ranks(graph)
    routed, paths = _with_bends(graph, rank)
    size.update((v, (DUMMY, DUMMY)) for v in rank if v not in size)
    layers = order(routed, rank)
    across = 0 if graph.rankdir in ("TB", "BT") else 1  # the axis along a rank: x for TB, y for LR
    label_room = [0.0] * len(layers)  # what the labels of edges leaving a rank need
    for e in graph.edges:
        need = (len(e.lines) * line_height if across == 0
                else max((width_of(t) for t in e.lines), default=0))
        label_room[rank[e.src]] = max(label_room[rank[e.src]], need)
    extent = [sum(size[v][across] for v in layer) + NODE_GAP * (len(layer) - 1) for layer in layers]
    widest = max(extent, default=0)
    boxes, along = {}, MARGIN + (TITLE if across == 0 else 0)
    for i, layer in enumerate(layers):
        depth = max(size[v][1 - across] for v in layer)
        at = MARGIN + (TITLE if across == 1 else 0) + (widest - extent[i]) / 2
        for v in layer:
            w, h = size[v]
            if across == 0:
                boxes[v] = Box(at, along + (depth - h) / 2, w, h)
            else:
                boxes[v] = Box(along + (depth - w) / 2, at, w, h)
            at += size[v][across] + NODE_GAP
        along += depth + RANK_GAP + label_room[i]
    if graph.rankdir in ("BT", "RL"):
        boxes = _mirrored(boxes, across)
    lines = []
    for e, path in zip(graph.edges, paths):
        bends = [boxes[v].centre for v in path[1:-1]]
        first, last = boxes[path[0]], boxes[path[-1]]
        start = _clip(first, bends[0] if bends else last.centre)
        end = _clip(last, bends[-1] if bends else first.centre)
        points = [start] + bends + [end]
        lines.append(Line(points, _label_centre(points, e.lines, across, width_of, line_height),
                          e.lines))
    right = max((b.x + b.w for b in boxes.values()), default=0) + MARGIN
    bottom = max((b.y + b.h for b in boxes.values()), default=0) + MARGIN
    return Layout(max(right, width_of(graph.name) + 2 * MARGIN), bottom, boxes, lines, line_height)
