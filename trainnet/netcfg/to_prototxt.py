"""Writing nets and solvers as Caffe prototxt (the inverse of ``prototxt.read_net``).

A layer's flattened parameters go back into the messages its type lists in ``caffe_params``;
defaults are left out, as in the YAML form.  Enum values are written bare (``pool: MAX``) and
strings quoted (``type: "xavier"``): the config models' ``Literal`` fields are Caffe enums except
the few that caffe.proto declares as strings, listed in ``STRING_LITERALS``.
"""

from __future__ import annotations

import json
import math
import typing
from typing import Any, Literal, Optional

from pydantic import BaseModel

from trainnet.netcfg.common import FillerParameter
from trainnet.netcfg.errors import _model_in
from trainnet.netcfg.net import COMMON_KEYS, LayerConfig, NetConfig
from trainnet.netcfg.solver import SolverConfig

# Literal fields that caffe.proto declares as strings (quoted in prototxt).
STRING_LITERALS = {(FillerParameter, "type"), (SolverConfig, "regularization_type")}
INDENT = "  "


def _is_enum(model: type[BaseModel], key: str) -> bool:
    if (model, key) in STRING_LITERALS:
        return False

    def has_literal(annotation) -> bool:
        return typing.get_origin(annotation) is Literal or any(
            has_literal(a) for a in typing.get_args(annotation))
    return has_literal(model.model_fields[key].annotation)


def scalar(value: Any, enum: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if enum:
        return str(value)
    return json.dumps(str(value))  # a JSON string literal is a valid text-format string


def _fields(model: Optional[type[BaseModel]], data: dict, depth: int) -> list[str]:
    out = []
    pad = INDENT * depth
    for key, value in data.items():
        inner = _model_in(model.model_fields[key].annotation) if model and key in model.model_fields else None
        enum = model is not None and key in model.model_fields and _is_enum(model, key)
        for item in (value if isinstance(value, list) else [value]):
            if isinstance(item, dict) and not item:
                out.append(f"{pad}{key} {{}}")
            elif isinstance(item, dict):
                out.append(f"{pad}{key} {{")
                out += _fields(inner, item, depth + 1)
                out.append(f"{pad}}}")
            else:
                out.append(f"{pad}{key}: {scalar(item, enum)}")
    return out


def _layer(layer: LayerConfig, depth: int) -> list[str]:
    from trainnet.layers.base import layer_class

    cls = layer_class(layer.type)
    common = layer.model_dump(include=set(COMMON_KEYS), exclude_defaults=True)
    common = {"name": layer.name, "type": layer.type, **common}
    lines = _fields(LayerConfig, common, depth)
    params = layer.params.model_dump(exclude_defaults=True)
    if params and not cls.caffe_params:
        raise ValueError(f"layer type {layer.type} declares no Caffe parameter message")
    claimed = {f for fields in cls.caffe_params.values() if fields for f in fields}
    for message, fields in cls.caffe_params.items():
        keys = fields if fields is not None else [k for k in params if k not in claimed]
        part = {k: params[k] for k in keys if k in params}
        if part:
            lines.append(f"{INDENT * depth}{message} {{")
            lines += _fields(cls.Params, part, depth + 1)
            lines.append(f"{INDENT * depth}}}")
    return lines


def dump_net_prototxt(net: NetConfig) -> str:
    """The net as prototxt text.  ``preprocess`` has no Caffe field and is not written."""
    head = net.model_dump(include={"name", "force_backward", "state"}, exclude_defaults=True)
    lines = _fields(NetConfig, head, 0)
    for layer in net.layer:
        lines.append("layer {")
        lines += _layer(layer, 1)
        lines.append("}")
    return "\n".join(lines) + "\n"


def dump_solver_prototxt(cfg: SolverConfig) -> str:
    data = cfg.model_dump(exclude={"file"}, exclude_defaults=True)
    data = {"net": cfg.net, **data}
    return "\n".join(_fields(SolverConfig, data, 0)) + "\n"
