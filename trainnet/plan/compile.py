"""The compiler: a chain of small pure passes from a NetConfig to a Plan.

In order: 1 filter, 2 splits, 3 shapes, 4 backward marks, 5 in place, 6 fuse, 7 params layout,
8 memory (each module's docstring carries its number)."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from trainnet.layers.base import StepContext
from trainnet.netcfg.common import NetState
from trainnet.netcfg.net import NetConfig
from trainnet.plan.backward import mark_backward
from trainnet.plan.filter import filter_layers
from trainnet.plan.fuse import fuse_layers
from trainnet.plan.inplace import run_in_place
from trainnet.plan.memory import assign_memory
from trainnet.plan.params import layout_params
from trainnet.plan.plan import Plan, diff_seeds
from trainnet.plan.shapes import infer_shapes
from trainnet.plan.splits import insert_splits, loss_weighted_tops


def compile_net(cfg: NetConfig, phase: str = "TRAIN", *, level: int | None = None,
                stages: list[str] | None = None, backward: bool | None = None,
                reuse_memory: bool = True, in_place: bool = True, fuse: bool = True,
                gpu: bool = False, keep: Sequence[str] = ()) -> Plan:
    """Compile ``cfg`` for ``phase``.  ``backward`` defaults to True for TRAIN, False for TEST;
    ``reuse_memory=False`` keeps every blob's value readable after a pass and ``in_place=False``
    runs no layer in place that the config does not, ``fuse=False`` folds no layer into another
    (no ReLU into its producer, no Scale into its BatchNorm; all three for debugging).
    ``keep`` names blobs to leave readable after a pass in a reuse-packed plan (their values
    and gradients live to the end, never written over in place nor fused away).
    ``gpu=True`` compiles for a GPU Net: the layers' buffers are then those of their GPU passes,
    and only a GPU Net runs the plan.  What the passes decide for a step reaches its layer as the
    step's frozen ``ctx``; no pass sets anything on a layer."""
    state = NetState(phase=phase, level=cfg.state.level if level is None else level,
                     stage=cfg.state.stage if stages is None else stages)
    layers = filter_layers(cfg.layer, state)
    if not layers:
        raise cfg.error(f"no layer is included in phase {phase}")
    _refuse_duplicate_names(cfg, layers, phase)
    written = {l.name for l in layers}
    layers = insert_splits(layers, loss_weighted_tops(layers))
    steps, blobs = infer_shapes(layers, phase, cfg.file)
    # a split the compiler added is marked, not the user's own
    steps = [replace(s, inserted=s.name not in written) for s in steps]
    backward = (phase == "TRAIN") if backward is None else backward
    if backward:
        steps = mark_backward(steps, cfg.force_backward, cfg.file)
    else:
        steps = [replace(s, propagate_down=[False] * len(s.bottoms),
                         frozen=[True] * len(s.layer.param_blobs())) for s in steps]
    steps = [replace(s, ctx=StepContext(forward_only=not s.need_backward, gpu=gpu)) for s in steps]
    kept = _kept(cfg, keep, blobs, phase)
    if in_place and reuse_memory:
        steps, blobs, aliases = run_in_place(steps, blobs, backward, kept)
    else:
        aliases = {}
    if fuse:
        steps = fuse_layers(steps, kept)
    steps = [replace(s, ctx=replace(s.ctx, in_place=bool(s.in_place))) for s in steps]
    steps, slots, param_arena, shadow = layout_params(steps, cfg.file)
    seeds = diff_seeds(steps) if backward else {}
    steps, blobs, memory = assign_memory(steps, blobs, backward, seeds, reuse_memory, kept)
    return Plan(phase=phase, net_name=cfg.name, steps=steps, blobs=blobs, params=slots,
                param_arena=param_arena, shadow_arena=shadow, arena_bytes=memory["arena"],
                arena_bytes_no_reuse=memory["arena_no_reuse"], blob_bytes=memory["blobs"],
                blob_bytes_no_reuse=memory["blobs_no_reuse"], workspace_bytes=memory["workspace"],
                workspace_offset=memory["workspace_offset"], workspace_steps=memory["workspace_steps"],
                backward=backward, aliases=aliases, seeds=seeds,
                file=cfg.file, gpu=gpu)


def _kept(cfg: NetConfig, keep: Sequence[str], blobs: dict, phase: str) -> frozenset[str]:
    unknown = [name for name in keep if name not in blobs]
    if unknown:
        raise cfg.error(f"keep: no blob {', '.join(repr(n) for n in unknown)} in the {phase} net "
                        f"(it has {', '.join(blobs)})")
    return frozenset(keep)


def _refuse_duplicate_names(cfg: NetConfig, layers, phase: str) -> None:
    """Two layers of one name in one phase's net: weights, snapshots and shared parameters are
    matched by layer name, so the second would silently take the first's blobs.  (A TRAIN and a
    TEST layer may share a name through include rules, as Caffe's data layers do.)"""
    first: dict[str, int] = {}
    for layer in layers:
        if layer.name in first:
            where = f" (also at line {first[layer.name]})" if first[layer.name] else ""
            raise cfg.error(f"a second layer named '{layer.name}' in the {phase} net{where}: "
                            "layer names must be unique in a net (weights are matched by name)",
                            layer)
        first[layer.name] = layer.line or 0
