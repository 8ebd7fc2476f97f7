"""The plan as readable text: what `trainnet plan` prints."""

from __future__ import annotations

import re
import textwrap
from typing import Optional

from trainnet.plan.plan import Plan

LABEL = 19        # the summary's labels are padded to this, the values start after
MIN_COLUMN = 12   # a wrapped column is never narrower than this


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def human_count(n: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def compiler_notes(s) -> list[str]:
    """What the compiler did to a step: an inserted split, fused layers, in place."""
    notes = []
    if s.inserted:
        notes.append("inserted split")
    if s.fused:
        notes.append("fused " + ", ".join(s.fused))
    if s.in_place:
        notes.append("in place (auto)" if s.auto_in_place else "in place")
    return notes


def _notes(plan: Plan, s) -> list[str]:
    """What the compiler did to a step, and how it takes part in backward."""
    notes = compiler_notes(s)
    owners = s.param_owners()
    if any(plan.params[u.slot].key != (owner.name, j) for u, (owner, j) in zip(s.params, owners)):
        notes.append("shares params")
    if has_backward(plan):
        learned = [u for u in s.params if plan.params[u.slot].learned]
        if not s.need_backward:
            notes.append("no backward")
        elif learned and all(u.frozen for u in learned):
            notes.append("frozen")
    if any(w != 0 for w in s.loss_weights):
        notes.append("loss " + ", ".join(f"{w:g}" for w in s.loss_weights if w != 0))
    if s.type == "Python":
        notes.append(f"python {s.layer.p.module}.{s.layer.p.layer}")
    return notes


def python_modules(plan: Plan) -> list[str]:
    """The modules the net's Python layers import, in step order."""
    return list(dict.fromkeys(s.layer.p.module for s in plan.steps if s.type == "Python"))


class _NameWrapper(textwrap.TextWrapper):
    """Wraps at spaces and also after the ``/``, ``_`` and ``,`` inside Caffe names, so that a
    long layer or blob name breaks at its own joints; a piece longer than the width stays whole."""

    wordsep_simple_re = re.compile(r"(\s+|(?<=[/_,]))")


def wrap_cell(text: str, width: Optional[int]) -> list[str]:
    """``text`` as the lines of a cell ``width`` wide (one line when ``width`` is None)."""
    if width is None or len(text) <= width:
        return [text]
    return _NameWrapper(width, break_long_words=False, break_on_hyphens=False).wrap(text) or [""]


def field_line(label: str, value: str, width: Optional[int]) -> str:
    """``label`` padded to the summary's value column, then ``value`` wrapped under it."""
    head = f"{label + ':':<{LABEL - 1}} "
    if width is None:
        return head + value
    return textwrap.fill(value, max(width, LABEL + 20), initial_indent=head,
                         subsequent_indent=" " * LABEL, break_long_words=False,
                         break_on_hyphens=False)


def _column_widths(natural: list[int], room: int) -> list[int]:
    """Widths for the wrappable columns: each its natural width if all fit in ``room``, else
    fair shares of it (a narrow column gives what it does not use to the others)."""
    widths, left = list(natural), list(range(len(natural)))
    while left:
        share = max(room // len(left), MIN_COLUMN)
        small = [i for i in left if natural[i] <= share]
        if not small:
            for i in left:
                widths[i] = share
            break
        for i in small:
            room -= natural[i]
            left.remove(i)
    return widths


def format_table(header: tuple, rows: list[tuple], right: set, wrap: set,
                 width: Optional[int]) -> list[str]:
    """Rows of cells under ``header``; the ``wrap`` columns wrap to fit ``width`` (when given),
    each continuation line aligned under its column."""
    natural = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    if width is not None:
        fixed = sum(natural[i] for i in range(len(header)) if i not in wrap) + 2 * (len(header) - 1)
        order = sorted(wrap)
        fitted = _column_widths([natural[i] for i in order], width - fixed)
        limits = {i: w for i, w in zip(order, fitted)}
    else:
        limits = {}
    cells = [[wrap_cell(c, limits.get(i)) for i, c in enumerate(r)] for r in [header] + rows]
    widths = [max(len(line) for r in cells for line in r[i]) for i in range(len(header))]

    def line(parts):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(parts, widths))).rstrip()

    out = []
    for k, r in enumerate(cells):
        depth = max(len(c) for c in r)
        out += [line([c[j] if j < len(c) else "" for c in r]) for j in range(depth)]
        if k == 0:
            out.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    return out


def _kind(plan: Plan) -> str:
    """How the plan runs, true of this plan: a training plan where no layer needs backward (a
    deploy net without a loss) runs forward only too."""
    if not plan.backward:
        return "forward only"
    if not any(s.need_backward for s in plan.steps):
        return "forward only: no layer needs backward"
    return "forward + backward"


def has_backward(plan: Plan) -> bool:
    """Whether running the plan runs a backward pass at all."""
    return plan.backward and any(s.need_backward for s in plan.steps)


def format_plan(plan: Plan, width: Optional[int] = None) -> str:
    """The plan as text; with ``width``, long cells and summary lines wrap to fit it."""
    title = f"net '{plan.net_name}'  phase {plan.phase}  ({_kind(plan)}, {len(plan.steps)} steps)"
    lines = wrap_cell(title, width) + [""]
    rows = []
    for s in plan.steps:
        tops = ", ".join(f"{t} {'x'.join(map(str, plan.blobs[t].shape)) or 'scalar'}" for t in s.tops)
        count = sum(plan.params[u.slot].count for u in s.params)
        rows.append((str(s.index), s.name, s.type, tops, human_count(count),
                     human_count(s.flops()), "; ".join(_notes(plan, s))))
    header = ("#", "layer", "type", "tops", "params", "flops", "notes")
    lines += format_table(header, rows, right={0, 4, 5}, wrap={1, 3, 6}, width=width)
    total_flops = sum(s.flops() for s in plan.steps)
    learned = (f", {plan.learned_count:,} learned" if plan.learned_count != plan.param_count
               else "")
    held = "blobs and their gradients" if has_backward(plan) else "blobs (no gradients)"
    fields = [
        ("parameters", f"{plan.param_count:,} ({human_bytes(4 * plan.param_count)}){learned}"),
        ("forward flops", human_count(total_flops)),
        ("activations", f"{human_bytes(plan.blob_bytes)} with reuse, "
         f"{human_bytes(plan.blob_bytes_no_reuse)} without "
         f"({plan.blob_bytes / max(plan.blob_bytes_no_reuse, 1):.0%}); {held}"),
        ("activation arena", f"{human_bytes(plan.arena_bytes)} with reuse, "
         f"{human_bytes(plan.arena_bytes_no_reuse)} without; with the layers' buffers "
         "(im2col columns, argmax, masks)"),
        ("outputs", ", ".join(plan.outputs))]
    if plan.workspace_bytes:
        fields.insert(-1, ("workspace", f"{human_bytes(plan.workspace_bytes)} shared by "
                          f"{plan.workspace_steps} steps (per-call scratch: im2col columns)"))
    modules = python_modules(plan)
    if modules:
        fields.append(("python modules", f"{', '.join(modules)} (imported from sys.path)"))
    lines += [""] + [field_line(label, value, width) for label, value in fields]
    return "\n".join(lines)
