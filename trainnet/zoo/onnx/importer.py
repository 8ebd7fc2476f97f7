"""ONNX -> trainnet: the CNN subset today's vision exporters emit, as a net (the YAML form of
trainnet/zoo/nets) and its weights by trainnet key.

The model is checked, brought to OPSET, given fixed input shapes and constant-folded first
(import_graph); then each node goes to the handler registered for its op type (import_ops,
import_math, import_conv, import_pool), which writes trainnet layers or folds the node into a
neighbour.  A node no handler maps is refused by name before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.formats.weightkey import key_layer
from trainnet.zoo.onnx import import_conv, import_math, import_ops, import_pool
from trainnet.zoo.onnx.common import require_onnx
from trainnet.zoo.onnx.import_context import HANDLERS, Context, node_label
from trainnet.zoo.onnx.import_graph import fix_inputs, fold_constants, normalise

HANDLER_MODULES = (import_ops, import_math, import_conv, import_pool)  # registers the handlers


def _refuse_unsupported(nodes, labels: dict[int, str]) -> None:
    unknown = [labels[i] for i, n in nodes
               if n.op_type not in HANDLERS.entries or n.domain not in ("", "ai.onnx")]
    if unknown:
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise TrainnetError(f"{', '.join(unknown[:8])}{more}: no trainnet layer maps this op "
                            "(supported: "
                            f"{', '.join(HANDLERS.names())}); nothing was written")


def _consumers(nodes) -> dict[str, list]:
    out: dict[str, list] = {}
    for _, node in nodes:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _input_layer(ctx: Context, inputs) -> dict:
    tops = [ctx.top(name) for name, _ in inputs]
    name = ctx.unique_layer(tops[0] if len(tops) == 1 else "input")
    ctx.layers.append({"name": name, "type": "Input",
                       "top": tops, "shape": [{"dim": list(s)} for _, s in inputs]})
    return ctx.layers[-1]


def _check_outputs(ctx: Context, model, label: str) -> None:
    for pad in ctx.pending_pads.values():
        raise TrainnetError(f"{pad.label}: a Pad folds only into a Conv, AveragePool or MaxPool "
                            "that reads it; nothing reads this one")
    for value in model.graph.output:
        if value.name not in ctx.tops:
            raise TrainnetError(f"{label}: graph output '{value.name}' is a constant, which "
                                "trainnet cannot produce as a blob")


def onnx_to_trainnet(model, name: Optional[str] = None,
                     label: str = "ONNX model") -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """(net as a YAML-ready dict, weights by trainnet key, notes) for an ONNX ModelProto."""
    onnx = require_onnx()
    model, notes = normalise(onnx, model, label)
    inputs, input_notes = fix_inputs(model, label)
    notes += input_notes
    labels = {i: node_label(n, i) for i, n in enumerate(model.graph.node)}
    consts, shapes, nodes, folded = fold_constants(onnx, model, labels)
    _refuse_unsupported(nodes, labels)
    ctx = Context(consts, shapes, _consumers(nodes), {v.name for v in model.graph.output})
    _input_layer(ctx, inputs)
    for index, node in nodes:
        if id(node) not in ctx.skip:
            HANDLERS[node.op_type](ctx, node, labels[index])
    _check_outputs(ctx, model, label)
    layers = {key_layer(k) for k in ctx.weights}
    count = sum(v.size for v in ctx.weights.values())
    summary = (f"{len(ctx.layers)} layers ({len(layers)} with weights), {count:,} parameters; "
               f"{folded} constant node{'' if folded == 1 else 's'} folded")
    if ctx.folded:
        summary += f"; folded into neighbours: {', '.join(ctx.folded)}"
    net_name = name or model.graph.name or "onnx_model"
    return {"name": net_name, "layer": ctx.layers}, ctx.weights, [summary, *notes, *ctx.notes]


def _check_compiles(net: dict, weights: dict[str, np.ndarray], label: str):
    """The net validated and compiled, its parameter shapes those of the weights."""
    from trainnet.formats.weightkey import weight_key
    from trainnet.netcfg import load_net_text
    from trainnet.plan import compile_net
    from trainnet.zoo.convert import yaml_text
    cfg = load_net_text(yaml_text(net), f"{label}.yaml")
    plan = compile_net(cfg, "TEST", backward=False)
    shapes = {weight_key(*s.key): tuple(s.shape) for s in plan.params}
    wrong = {k: (shapes.get(k), v.shape) for k, v in weights.items() if shapes.get(k) != v.shape}
    if wrong or set(shapes) != set(weights):
        raise RuntimeError(f"imported net and weights disagree: {wrong or set(shapes) ^ set(weights)}")
    return cfg


def _read(onnx, src: Path):
    try:
        return onnx.load(str(src))
    except FileNotFoundError:
        raise TrainnetError(f"{src}: no such file") from None
    except Exception as exc:  # protobuf's DecodeError, a truncated file, an unreadable one
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainnetError(f"{src}: not a readable ONNX model ({detail})") from None


def import_onnx(src: Path, net_dst: Path, weights_dst: Path):
    """Read ``src``, write the net YAML and the weights (safetensors), both atomically."""
    from trainnet.netcfg.common import Preprocess
    from trainnet.solver.snapshot import save_tensors
    from trainnet.zoo.convert import Converted, preprocess_metadata, yaml_text
    src, net_dst, weights_dst = Path(src), Path(net_dst), Path(weights_dst)
    model = _read(require_onnx(), src)
    net, weights, notes = onnx_to_trainnet(model, name=model.graph.name or src.stem,
                                           label=str(src))
    meta = {"format": "trainnet-weights", "net": net["name"], "source": src.name}
    record = {p.key: p.value for p in model.metadata_props}.get("preprocess")
    if record is not None:
        try:
            preprocess = Preprocess.model_validate(json.loads(record))
        except Exception as exc:
            raise TrainnetError(f"{src}: metadata 'preprocess' is not a preprocessing record "
                                f"({str(exc).strip().splitlines()[0]})") from None
        net = {"name": net["name"], "preprocess": preprocess.model_dump(exclude_defaults=True),
               "layer": net["layer"]}
        meta.update(preprocess_metadata(preprocess))
    else:
        notes.append("no preprocessing record in the model's metadata")
    _check_compiles(net, weights, net_dst.stem)
    atomic_write(net_dst, yaml_text(net).encode())
    save_tensors(weights_dst, weights, meta)
    return Converted(kind="onnx model", notes=notes)
