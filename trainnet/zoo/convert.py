"""`trainnet convert`: between Caffe's files and trainnet's, chosen by the files' suffixes.

- net or solver: prototxt <-> YAML (the same validated models either way, so a round trip keeps
  the meaning; YAML flattens each layer's parameter messages onto the layer);
- weights: caffemodel -> safetensors (legacy blob shapes fixed, against the net's shapes when a
  model is given) and safetensors -> caffemodel (layer types, bottoms and tops from the model).

A converted model records its preprocessing (``preprocess`` in the net, and in the weights'
metadata) from what the user states; nothing is guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.formats.caffemodel import (caffe_to_trainnet, read_caffemodel, trainnet_to_caffe,
                                         write_caffemodel)
from trainnet.formats.weightkey import key_layer, weight_key
from trainnet.layers import known_types
from trainnet.netcfg import NetConfig, SolverConfig, dump_net, load_net, load_solver
from trainnet.netcfg.common import Preprocess
from trainnet.netcfg.kind import config_kind
from trainnet.netcfg.prototxt import SOLVER_NETS, is_prototxt, read_file
from trainnet.netcfg.source import load_yaml
from trainnet.netcfg.text_format import parse_text
from trainnet.netcfg.to_prototxt import caffe_notes, dump_net_prototxt, dump_solver_prototxt
from trainnet.netcfg.yaml_scalars import Dumper
from trainnet.plan import compile_net
from trainnet.solver.snapshot import read_tensors, save_tensors
from trainnet.solver.weights import EXACT, account

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class Converted:
    """What a conversion wrote, for the command to report."""

    kind: str                        # "net", "solver" or "weights"
    notes: list[str] = field(default_factory=list)


def _kind_of(path: Path) -> str:
    """'net' or 'solver', from a config file's top-level keys (a net when they do not say: the
    net's loader then names what is wrong)."""
    if is_prototxt(path):
        data = {f.key: None for f in parse_text(read_file(path), str(path))}
    else:
        data = load_yaml(path)[0]
    return config_kind(data) or "net"


def yaml_text(data: dict) -> str:
    """YAML as the shipped configs read: blocks for layers, flow style for short leaves."""
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=None, width=100)


def solver_dict(cfg: SolverConfig) -> dict:
    """The YAML form of a solver: fields at their defaults left out, inline nets as net YAML."""
    data = cfg.model_dump(exclude={"file"}, exclude_defaults=True)
    for key in SOLVER_NETS:
        if key in data:
            value = getattr(cfg, key)
            data[key] = [dump_net(n) for n in value] if isinstance(value, list) else dump_net(value)
    return data


def convert_config(src: Path, dst: Path, preprocess: Optional[Preprocess] = None) -> Converted:
    """A net or solver between prototxt and YAML (either way; YAML to YAML normalises)."""
    kind = _kind_of(src)
    out = Converted(kind)
    to_prototxt = is_prototxt(dst)
    if not to_prototxt and dst.suffix.lower() not in YAML_SUFFIXES:
        raise TrainnetError(f"{dst}: write a config as .yaml or .prototxt")
    if kind == "solver":
        if preprocess is not None:
            raise TrainnetError("preprocessing belongs to a net, not to a solver")
        cfg = load_solver(src)
        text = dump_solver_prototxt(cfg) if to_prototxt else yaml_text(solver_dict(cfg))
        if to_prototxt and cfg.snapshot_kind == "SAFETENSORS":
            out.notes.append("snapshot_format: SAFETENSORS is trainnet's own; Caffe snapshots in "
                             "BINARYPROTO or HDF5" if cfg.snapshot_format else
                             "without snapshot_format a prototxt solver snapshots in Caffe's "
                             "BINARYPROTO (this YAML solver used trainnet's safetensors)")
        own = {"snapshot_keep": cfg.snapshot_keep,
               "loss_explosion_factor": cfg.loss_explosion_factor if "loss_explosion_factor" in
               cfg.model_fields_set else None}
        for field, value in own.items():
            if to_prototxt and value:
                out.notes.append(f"{field}: {value:g} is trainnet's own (kept in the prototxt for "
                                 "trainnet; remove it for Caffe, which refuses the field)")
        for key in ("net", "train_net", "test_net"):
            for name in getattr(cfg, key) if key == "test_net" else [getattr(cfg, key)]:
                if name is not None and is_prototxt(name) != to_prototxt:
                    out.notes.append(f"the solver still names its net {name}: convert that "
                                     f"file too and edit {key}:")
    else:
        net = load_net(src)
        if preprocess is not None:
            net = net.model_copy(update={"preprocess": preprocess})
        if to_prototxt:
            text = dump_net_prototxt(net)
            out.notes += caffe_notes(net)
            if net.preprocess is not None:
                out.notes.append("prototxt has no field for the preprocessing record; it stays in "
                                 "the YAML only")
        else:
            text = yaml_text(dump_net(net))
            if net.preprocess is None:
                out.notes.append("no preprocessing recorded (give --channel-order, --raw-scale, "
                                 "--mean-file/--mean-value, --input-scale to record it)")
    atomic_write(dst, text.encode())
    return out


def preprocess_metadata(preprocess: Optional[Preprocess]) -> dict[str, str]:
    return {} if preprocess is None else {"preprocess": json.dumps(
        preprocess.model_dump(exclude_defaults=False))}


def _param_shapes(model: str) -> tuple[NetConfig, dict[str, tuple]]:
    """The net ``model`` names and its parameter blob shapes by trainnet key (TEST phase)."""
    net = load_net(model)
    plan = compile_net(net, "TEST", backward=False)
    return net, {weight_key(*s.key): tuple(s.shape) for s in plan.params}


def convert_weights(src: Path, dst: Path, model: Optional[str] = None,
                    preprocess: Optional[Preprocess] = None) -> Converted:
    """Weights between a Caffe .caffemodel and trainnet's .safetensors (either way)."""
    kinds = (src.suffix.lower(), dst.suffix.lower())
    out = Converted("weights")
    if kinds == (".caffemodel", ".safetensors"):
        caffe = read_caffemodel(src)
        net, targets = _param_shapes(model) if model else (None, None)
        weights = caffe_to_trainnet(caffe, targets, known_types=known_types())
        if targets is not None:
            skipped = sorted({key_layer(k) for k in weights if k not in targets})
            weights = {k: v for k, v in weights.items() if k in targets}
            missing = sorted({key_layer(k) for k in targets if k not in weights})
            if skipped:
                out.notes.append(f"layers of the caffemodel not in the net, left out: {', '.join(skipped)}")
            if missing:
                out.notes.append("layers of the net not in the caffemodel (new layers, or a file "
                                 f"cut short): {', '.join(missing)}")
            preprocess = preprocess or net.preprocess
        elif caffe.layers[-1].blobs:
            out.notes.append(f"the file's last layer, '{caffe.layers[-1].name}', holds weights, "
                             "where a model Caffe saves ends in a layer without (a loss, a "
                             "softmax): if the file may be cut short, give --model to check it "
                             "against the net")
        layers = sorted({key_layer(k) for k in weights})
        out.notes.insert(0, f"{len(layers)} layers, {sum(v.size for v in weights.values()):,} "
                         "parameters")
        if preprocess is None:
            out.notes.append("no preprocessing recorded (give --channel-order, --raw-scale, "
                             "--mean-file/--mean-value, --input-scale, or --model with a "
                             "preprocess section)")
        meta = {"format": "trainnet-weights", "net": caffe.name, "source": src.name,
                **preprocess_metadata(preprocess)}
        save_tensors(dst, weights, meta)
    elif kinds == (".safetensors", ".caffemodel"):
        if not model:
            raise TrainnetError("writing a caffemodel needs --model: the net gives each layer's "
                                "type, bottoms and tops")
        if preprocess is not None:
            raise TrainnetError("a caffemodel has no field for the preprocessing record")
        net, targets = _param_shapes(model)
        weights = read_tensors(src, "weights")
        loaded, _, skipped = account(src, weights, targets, EXACT)  # every blob of the net
        if skipped:
            out.notes.append(f"layers of the weights file not in the net, left out: {', '.join(skipped)}")
        layers = trainnet_to_caffe({key: weights[key] for key in loaded}, net)
        write_caffemodel(dst, net.name, layers)
        out.notes.append(f"{sum(1 for l in layers if l.blobs)} layers with weights, "
                         f"{len(layers)} layers in all")
    else:
        raise TrainnetError(f"convert weights from .caffemodel to .safetensors or back; got "
                            f"{src.suffix or 'no suffix'} -> {dst.suffix or 'no suffix'}")
    return out
