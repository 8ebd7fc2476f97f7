"""The plan as readable text: what `trainnet plan` prints."""

from __future__ import annotations

from trainnet.plan.plan import Plan


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


def _notes(plan: Plan, s) -> list[str]:
    """What the compiler did to a step, and how it takes part in backward."""
    notes = []
    if s.inserted:
        notes.append("inserted split")
    if s.fused:
        notes.append("fused " + ", ".join(s.fused))
    if s.in_place:
        notes.append("in place (auto)" if s.auto_in_place else "in place")
    owners = s.param_owners()
    if any(plan.params[u.slot].key != (owner.name, j) for u, (owner, j) in zip(s.params, owners)):
        notes.append("shares params")
    if plan.backward:
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


def format_plan(plan: Plan) -> str:
    kind = "forward + backward" if plan.backward else "forward only"
    lines = [f"net '{plan.net_name}'  phase {plan.phase}  ({kind}, {len(plan.steps)} steps)", ""]
    rows = []
    for s in plan.steps:
        tops = ", ".join(f"{t} {'x'.join(map(str, plan.blobs[t].shape)) or 'scalar'}" for t in s.tops)
        count = sum(plan.params[u.slot].count for u in s.params)
        rows.append((str(s.index), s.name, s.type, tops, human_count(count),
                     human_count(s.flops()), "; ".join(_notes(plan, s))))
    header = ("#", "layer", "type", "tops", "params", "flops", "notes")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    right = {0, 4, 5}

    def row(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines += [row(header), "-" * len(row(header))] + [row(r) for r in rows]
    total_flops = sum(s.flops() for s in plan.steps)
    lines += ["",
              f"parameters:        {plan.param_count:,} ({human_bytes(4 * plan.param_count)})"
              + (f", {plan.learned_count:,} learned" if plan.learned_count != plan.param_count
                 else ""),
              f"forward flops:     {human_count(total_flops)}",
              f"activations:       {human_bytes(plan.blob_bytes)} with reuse, "
              f"{human_bytes(plan.blob_bytes_no_reuse)} without "
              f"({plan.blob_bytes / max(plan.blob_bytes_no_reuse, 1):.0%}); blobs and their gradients",
              f"activation arena:  {human_bytes(plan.arena_bytes)} with reuse, "
              f"{human_bytes(plan.arena_bytes_no_reuse)} without; with the layers' buffers "
              "(im2col columns, argmax, masks)",
              f"outputs:           {', '.join(plan.outputs)}"]
    modules = python_modules(plan)
    if modules:
        lines.append(f"python modules:    {', '.join(modules)} (imported from sys.path)")
    return "\n".join(lines)
