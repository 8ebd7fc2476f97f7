"""trainnet's own renderer, for when Graphviz's ``dot`` is not installed: the layered layout of
draw_layout written as SVG text directly, or drawn with Pillow as PNG or PDF."""

from __future__ import annotations

import io
import math
from typing import Optional
from xml.sax.saxutils import escape

from trainnet.errors import TrainnetError

from trainnet.tools.draw_graph import COLOURS, Graph
from trainnet.tools.draw_layout import Layout, layout

FONT_SIZE = 12
SVG_CHAR = 0.62 * FONT_SIZE   # a monospace character's advance
SVG_LINE = 1.3 * FONT_SIZE
EDGE_COLOUR = "#555555"
# Pillow's largest side (its JPEG encoder's, which a PDF's image goes through) and a pixel count
# that stays a picture (about 300 MB of RGB; Pillow warns of larger ones it opens)
MAX_SIDE = 65500
MAX_PIXELS = 89_478_485


def _attr(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def _svg_text(x: float, y: float, lines: list[str], line_height: float, cls: str) -> list[str]:
    """Lines centred on (x, y); the first of a node is bold."""
    top = y - line_height * len(lines) / 2 + 0.8 * line_height
    out = []
    for i, text in enumerate(lines):
        weight = ' font-weight="bold"' if cls == "node" and i == 0 else ""
        out.append(f'<text x="{x:.1f}" y="{top + i * line_height:.1f}" class="{cls}"{weight}>'
                   f"{escape(text)}</text>")
    return out


def to_svg(graph: Graph) -> bytes:
    """The picture as SVG text (monospace text, so that its width is known without a font)."""
    placed = layout(graph, lambda t: len(t) * SVG_CHAR, SVG_LINE)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{placed.width:.0f}" '
           f'height="{placed.height:.0f}" viewBox="0 0 {placed.width:.0f} {placed.height:.0f}">',
           f"<title>{escape(graph.name)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
           f'markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{EDGE_COLOUR}"/>'
           "</marker></defs>",
           f'<style>text {{ font-family: monospace; font-size: {FONT_SIZE}px; text-anchor: middle; }}'
           " text.edge { fill: #333333; stroke: white; stroke-width: 3px; paint-order: stroke; }"
           "</style>",
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{placed.width / 2:.1f}" y="20" font-weight="bold">{escape(graph.name)}</text>']
    for line in placed.lines:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in line.points)
        out.append(f'<polyline points="{points}" fill="none" stroke="{EDGE_COLOUR}" '
                   'marker-end="url(#arrow)"/>')
    for node in graph.nodes:
        box = placed.boxes[node.id]
        rx = box.h / 2 if node.output else 6
        dash = ' stroke-dasharray="5,3"' if node.dashed else ""
        out.append(f'<g id="{_attr(node.id)}"><title>{escape(node.lines[0])}</title>'
                   f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
                   f'rx="{rx:.1f}" fill="{COLOURS[node.kind]}" stroke="#333333"{dash}/>')
        out += _svg_text(*box.centre, node.lines, SVG_LINE, "node") + ["</g>"]
    for line in placed.lines:
        out += _svg_text(*line.label_at, line.lines, SVG_LINE, "edge")
    out.append("</svg>")
    return ("\n".join(out) + "\n").encode()


def _font(size: int):
    from PIL import ImageFont  # Pillow is a dependency; imported where pictures are drawn
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _arrowhead(draw, start, end) -> None:
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    wing = [(end[0] - 10 * math.cos(angle + s), end[1] - 10 * math.sin(angle + s))
            for s in (0.4, -0.4)]
    draw.polygon([end] + wing, fill=EDGE_COLOUR)


def _text(draw, font, centre, lines, line_height, fill="#000000", halo: int = 0) -> None:
    top = centre[1] - line_height * len(lines) / 2
    for i, text in enumerate(lines):
        width = draw.textlength(text, font=font)
        draw.text((centre[0] - width / 2, top + i * line_height), text, font=font, fill=fill,
                  stroke_width=halo, stroke_fill="white")


def _placed(graph: Graph, scale: int):
    """The font, line height and layout of ``graph`` drawn at ``scale``."""
    from PIL import Image, ImageDraw

    font = _font(FONT_SIZE * scale)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = 1.3 * FONT_SIZE * scale
    placed: Layout = layout(graph, lambda t: probe.textlength(t, font=font) / scale + 0,
                            line_height / scale)
    return font, line_height, placed


def _size(placed: Layout, scale: int) -> tuple[int, int]:
    return int(placed.width * scale) + 1, int(placed.height * scale) + 1


def _fits(size: tuple[int, int]) -> bool:
    return max(size) <= MAX_SIDE and size[0] * size[1] <= MAX_PIXELS


def _scaled(graph: Graph, scale: Optional[int]):
    """``_placed`` at ``scale``, or (None) at 2 when the picture fits Pillow's limits so, else
    at 1; a picture too large even at 1 is one TrainnetError saying what to do instead."""
    if scale is not None:
        return scale, _placed(graph, scale)
    for scale in (2, 1):
        placed = _placed(graph, scale)
        if _fits(_size(placed[2], scale)):
            return scale, placed
    w, h = _size(placed[2], 1)
    other = "TB" if w >= h else "LR"
    raise TrainnetError(f"the picture of '{graph.name}' would be {w} x {h} pixels, more than a PNG "
                        f"or PDF drawn with Pillow can hold ({MAX_SIDE} pixels a side, "
                        f"{MAX_PIXELS:,} in all): draw it with --rankdir {other}, or as .svg, "
                        "or install Graphviz")


def to_image(graph: Graph, scale: Optional[int] = None):
    """The picture as a Pillow RGB image, ``scale`` times the SVG's size (None: 2, for sharp
    text, or 1 for a picture too large at 2; see ``_scaled``)."""
    from PIL import Image, ImageDraw

    scale, (font, line_height, placed) = _scaled(graph, scale)
    image = Image.new("RGB", _size(placed, scale), "white")
    draw = ImageDraw.Draw(image)
    s = float(scale)
    _text(draw, font, (placed.width * s / 2, 12 * s), [graph.name], line_height)
    for line in placed.lines:
        points = [(x * s, y * s) for x, y in line.points]
        draw.line(points, fill=EDGE_COLOUR, width=max(1, scale), joint="curve")
        _arrowhead(draw, points[-2], points[-1])
    for node in graph.nodes:
        b = placed.boxes[node.id]
        rect = [b.x * s, b.y * s, (b.x + b.w) * s, (b.y + b.h) * s]
        radius = b.h * s / 2 if node.output else 6 * s
        draw.rounded_rectangle(rect, radius=radius, fill=COLOURS[node.kind], outline="#333333",
                               width=max(1, scale - (1 if node.dashed else 0)))
        _text(draw, font, (b.centre[0] * s, b.centre[1] * s), node.lines, line_height)
    for line in placed.lines:
        _text(draw, font, (line.label_at[0] * s, line.label_at[1] * s), line.lines, line_height,
              "#333333", halo=scale)
    return image


def to_raster(graph: Graph, fmt: str) -> bytes:
    """The picture as PNG or PDF bytes, drawn with Pillow."""
    buffer = io.BytesIO()
    scale, _ = _scaled(graph, None)
    image = to_image(graph, scale)
    if fmt == "pdf":  # the page the SVG's size in points
        image.save(buffer, format="PDF", resolution=72.0 * scale)
    else:
        image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
