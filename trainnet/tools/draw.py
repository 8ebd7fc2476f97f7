"""Pictures of a net (`trainnet draw`): the net as its config describes it, or the compiled plan.

The graph is written as Graphviz DOT text; when Graphviz's ``dot`` program is on PATH it lays
the picture out (SVG, PNG, PDF), else trainnet's own small layered renderer does (SVG written
directly, PNG and PDF drawn with Pillow).  ``.dot`` always writes the DOT text itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Optional

from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.plan.plan import Plan
from trainnet.tools.draw_dot import to_dot
from trainnet.tools.draw_graph import Graph, config_graph, net_graph, plan_graph
from trainnet.tools.draw_render import to_raster, to_svg

FORMATS = ("svg", "png", "pdf", "dot")
RANKDIRS = ("LR", "TB", "BT", "RL")
OWN_RENDERER = ("laid out by trainnet's own renderer; Graphviz gives a better layout "
                "(apt install graphviz, brew install graphviz or conda install graphviz)")

# How to compile a net for its picture: the net view keeps every layer its own step and every
# blob its own memory, so each layer is a node and each blob keeps its name.
NET_VIEW = dict(in_place=False, fuse=False, reuse_memory=False)

__all__ = ["FORMATS", "NET_VIEW", "OWN_RENDERER", "RANKDIRS", "Graph", "config_graph",
           "graph_of", "picture_format", "render", "to_dot", "write_picture"]


def picture_format(path, fmt: Optional[str] = None) -> str:
    """The picture format ``path`` asks for by its suffix (or ``fmt`` when given)."""
    name = (fmt or Path(path).suffix.lstrip(".")).lower()
    if name not in FORMATS:
        given = f"'{fmt}'" if fmt else (f"'{Path(path).suffix}'" if Path(path).suffix else "none")
        raise TrainnetError(f"{path}: unknown picture format {given}; give a file ending in "
                            + ", ".join(f".{f}" for f in FORMATS))
    return name


def check_rankdir(rankdir: str) -> str:
    if str(rankdir).upper() not in RANKDIRS:
        raise TrainnetError(f"rankdir '{rankdir}': expected one of {', '.join(RANKDIRS)}")
    return str(rankdir).upper()


def graph_of(compiled: Plan, plan: bool = False, rankdir: str = "LR") -> Graph:
    """The graph of a compiled net: the net view (compile it with ``NET_VIEW``) or, with
    ``plan=True``, the plan's steps, splits, fusions and memory."""
    rankdir = check_rankdir(rankdir)
    return plan_graph(compiled, rankdir) if plan else net_graph(compiled, rankdir)


def _graphviz(dot_text: str, fmt: str, program: str) -> bytes:
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TrainnetError(f"Graphviz ({program}) failed: {exc}") from None
    if done.returncode != 0 or not done.stdout:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise TrainnetError(f"Graphviz ({program}) failed with exit status {done.returncode}"
                            + (f": {why[0]}" if why else ""))
    return done.stdout


def render(graph: Graph, fmt: str) -> tuple[bytes, Optional[str]]:
    """The picture's bytes in ``fmt`` and a note to show the user (None, or that trainnet's own
    renderer drew it because Graphviz's ``dot`` is not on PATH)."""
    dot_text = to_dot(graph)
    if fmt == "dot":
        return dot_text.encode(), None
    program = shutil.which("dot")
    if program:
        return _graphviz(dot_text, fmt, program), None
    return (to_svg(graph) if fmt == "svg" else to_raster(graph, fmt)), OWN_RENDERER


def write_picture(graph: Graph, path, fmt: Optional[str] = None) -> Optional[str]:
    """Render ``graph`` into ``path`` (atomically; the format from its suffix unless ``fmt``);
    returns the note ``render`` gives."""
    fmt = picture_format(path, fmt)
    payload, note = render(graph, fmt)
    atomic_write(Path(path), payload)
    return note
