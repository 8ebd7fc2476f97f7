"""A graph as Graphviz DOT text (written here: no pydot)."""

from __future__ import annotations

from trainnet.tools.draw_graph import COLOURS, Graph


def quote(text: str) -> str:
    """A DOT double-quoted string (backslashes and quotes escaped, a newline as ``\\n``)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def _label(lines: list[str]) -> str:
    return quote("\n".join(lines))


def to_dot(graph: Graph) -> str:
    """The DOT text of ``graph``: layers as filled boxes coloured by kind, outputs as ellipses,
    inserted steps dashed, edges labelled with their blob."""
    out = [f"digraph {quote(graph.name)} {{",
           f"  rankdir={graph.rankdir};",
           f"  label={quote(graph.name)}; labelloc=t;",
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
           '  edge [fontname="Helvetica", fontsize=9];']
    for node in graph.nodes:
        attrs = [f"label={_label(node.lines)}", f'fillcolor="{COLOURS[node.kind]}"']
        if node.output:
            attrs.append("shape=ellipse")
        if node.dashed:
            attrs.append('style="rounded,filled,dashed"')
        out.append(f"  {node.id} [{', '.join(attrs)}];")
    for edge in graph.edges:
        out.append(f"  {edge.src} -> {edge.dst} [label={_label(edge.lines)}];")
    out.append("}")
    return "\n".join(out) + "\n"
