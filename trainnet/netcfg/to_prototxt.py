"""Writing nets and solvers as Caffe prototxt (the inverse of ``prototxt.read_net``).

A layer's flattened parameters go back into the messages its type lists in ``caffe_params``.
Fields at trainnet's default are left out, as in the YAML form, except where Caffe would assume
another value: those ``caffe_defaults.CAFFE_DEFAULTS`` lists are written.  Enum values are written
bare (``pool: MAX``) and strings quoted (``type: "xavier"``): the config models' ``Literal``
fields are Caffe enums except the few that caffe.proto declares as strings, listed in
``STRING_LITERALS``.
"""

from __future__ import annotations

import json
import math
import typing
from typing import Any, Collection, Literal, Mapping, Optional

from pydantic import BaseModel

from trainnet.netcfg.caffe_defaults import caffe_needs, must_write
from trainnet.netcfg.common import (BlobShape, FillerParameter, NetState, NetStateRule, ParamSpec,
                                    TransformationParameter)
from trainnet.netcfg.errors import _model_in
from trainnet.netcfg.layer_types import layer_class
from trainnet.netcfg.net import LayerConfig, NetConfig
from trainnet.netcfg.solver import SolverConfig

# Literal fields that caffe.proto declares as strings (quoted in prototxt).
STRING_LITERALS = {(FillerParameter, "type"), (SolverConfig, "regularization_type")}
INDENT = "  "
# The Caffe message each shared config model writes (the keys of its CAFFE_DEFAULTS entries).
MESSAGES = {NetConfig: "NetParameter", LayerConfig: "LayerParameter", SolverConfig: "SolverParameter",
            NetState: "NetState", NetStateRule: "NetStateRule", ParamSpec: "ParamSpec",
            FillerParameter: "FillerParameter", TransformationParameter: "TransformationParameter",
            BlobShape: "BlobShape"}


def message_data(model: BaseModel, needs: Optional[Mapping[str, Any]] = None,
                 skip: Collection[str] = (), only_needed: bool = False) -> dict:
    """The fields of ``model`` a prototxt writes: those not at trainnet's default, and those
    Caffe would read otherwise (``needs``: field -> Caffe's default; by default the entries of the
    model's message).  ``only_needed``: just the latter (a nested message left at its default)."""
    cls = type(model)
    needs = caffe_needs(MESSAGES.get(cls, "")) if needs is None else needs
    out: dict[str, Any] = {}
    for key, info in cls.model_fields.items():
        if key in skip:
            continue
        value = getattr(model, key)
        changed = info.is_required() or value != info.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            inner = message_data(value, only_needed=only_needed or not changed)
            if inner or (changed and not only_needed):
                out[key] = inner
        elif (changed and not only_needed) or (key in needs and must_write(value, needs[key])):
            out[key] = [message_data(v) if isinstance(v, BaseModel) else v for v in value] \
                if isinstance(value, list) else value
    return out


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
    cls = layer_class(layer.type)
    lines = _fields(LayerConfig, message_data(layer, skip=("params", "line")), depth)
    needs = {k: v for message in cls.caffe_params for k, v in caffe_needs(message).items()}
    params = message_data(layer.params, needs)
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


def _net(net: NetConfig, depth: int) -> list[str]:
    pad = INDENT * depth
    lines = _fields(NetConfig, message_data(net, skip=("layer", "preprocess", "file")), depth)
    for layer in net.layer:
        lines += [f"{pad}layer {{", *_layer(layer, depth + 1), f"{pad}}}"]
    return lines


def dump_net_prototxt(net: NetConfig) -> str:
    """The net as prototxt text.  ``preprocess`` has no Caffe field and is not written."""
    return "\n".join(_net(net, 0)) + "\n"


def dump_solver_prototxt(cfg: SolverConfig) -> str:
    """The solver as prototxt text; inline nets (``net_param { ... }``) written as nets are."""
    nets = {key: value if isinstance(value, list) else [value] for key, value in cfg
            if isinstance(value, NetConfig) or (isinstance(value, list) and value
                                                and isinstance(value[0], NetConfig))}
    lines = _fields(SolverConfig, message_data(cfg, skip=("file", *nets)), 0)
    for key, values in nets.items():
        for net in values:
            lines += [f"{key} {{", *_net(net, 1), "}"]
    return "\n".join(lines) + "\n"


def caffe_notes(net: NetConfig) -> list[str]:
    """Per layer, what Caffe would not read in the prototxt as trainnet does (fields and values
    trainnet adds to Caffe's), to tell the user converting the net for Caffe."""
    return [f"layer '{layer.name}' ({layer.type}): {note}" for layer in net.layer
            for note in layer_class(layer.type).caffe_notes(layer.params)]
