"""Caffe's caffe.proto as a FileDescriptorProto, made from trainnet's pydantic schema.

Each message's fields are a config model's fields (NetConfig -> NetParameter, LayerConfig ->
LayerParameter, a layer type's ``Params`` -> the ``*_param`` messages its ``caffe_params`` names,
SolverConfig -> SolverParameter ...): a Python type gives the protobuf type (int -> int32, or
int64 where caffe.proto has it; float -> float; bool; str -> string; a ``Literal`` -> the Caffe
enum, or string where caffe.proto declares one; a model -> its message), a list gives
``repeated``, a default gives the proto2 default.  Numbers and enum values come from
``numbers``; ``EXTRAS`` adds the fields Caffe has and the schema does not (deprecated inputs, V1
fields, blobs), so real Caffe files parse.  The binary-file messages (BlobProto, Datum ...) are
the ones ``trainnet.formats.caffe_pb`` already declares.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Optional, Union

from google.protobuf import descriptor_pb2
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from trainnet.caffe.proto.numbers import (CAFFE_DEFAULTS, ENUMS, FIELDS, LAYER_PARAMS, PHASE,
                                          V1_PARAMS)
from trainnet.formats import caffe_pb
from trainnet.netcfg.common import INT64_FIELDS
from trainnet.netcfg.layer_types import registered
from trainnet.netcfg.net import NetConfig
from trainnet.netcfg.solver import SolverConfig
from trainnet.netcfg.to_prototxt import MESSAGES, STRING_LITERALS

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {"int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "uint32": F.TYPE_UINT32,
           "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE, "bool": F.TYPE_BOOL,
           "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES}
PY_SCALARS = {int: "int32", float: "float", bool: "bool", str: "string"}
# Schema fields that are trainnet's bookkeeping, not settings (no Caffe field, no number).
SKIP = {"LayerParameter": ("params", "line"), "NetParameter": ("preprocess", "file"),
        "SolverParameter": ("file",)}
# The binary-file messages, declared once in formats.caffe_pb with their numbers and packing.
PREDEFINED = ("BlobShape", "BlobProto", "BlobProtoVector", "Datum", "SolverState",
              "V0LayerParameter")
V1_FIELDS = {"bottom": "repeated string", "top": "repeated string", "name": "string",
             "include": "repeated NetStateRule", "exclude": "repeated NetStateRule",
             "type": "enum", "blobs": "repeated BlobProto", "param": "repeated string",
             "blob_share_mode": "repeated enum", "blobs_lr": "repeated float",
             "weight_decay": "repeated float", "loss_weight": "repeated float",
             "layer": "V0LayerParameter"}
DEPRECATED_DATA = {"scale": "float 1", "mean_file": "string", "crop_size": "int32 0",
                   "mirror": "bool false"}
# Caffe's fields beyond trainnet's schema: "[repeated] TYPE [DEFAULT]" (TYPE "enum": see ENUMS).
EXTRAS = {
    "NetParameter": {"input": "repeated string", "input_shape": "repeated BlobShape",
                     "input_dim": "repeated int32", "debug_info": "bool false",
                     "layers": "repeated V1LayerParameter"},
    "LayerParameter": {"phase": "Phase", "blobs": "repeated BlobProto"},
    "SolverParameter": {"snapshot_diff": "bool false", "solver_type": "enum SGD",
                        "layer_wise_reduce": "bool true", "weights": "repeated string"},
    "DataParameter": DEPRECATED_DATA, "ImageDataParameter": DEPRECATED_DATA,
    "V1LayerParameter": {**V1_FIELDS, **{k: f"{LAYER_PARAMS[k][1]}" if k in LAYER_PARAMS else
                                         "TransformationParameter" for k in V1_PARAMS}},
}
ALL_ENUMS = {**ENUMS, ("V1LayerParameter", "type"): ("LayerType", caffe_pb.V1_LAYER_TYPES)}


def _strip(annotation) -> tuple[bool, Any]:
    """(repeated, the element type) of an annotation, without Annotated and Optional."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _strip(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _strip(args[0])
    if origin is list:
        return True, _strip(typing.get_args(annotation)[0])[1]
    return False, annotation


def _message_of(model: type) -> str:
    """The Caffe message a config model is: by the writers' table, else by its name."""
    if model in MESSAGES:
        return MESSAGES[model]
    return "BlobShape" if model.__name__.endswith("Shape") else model.__name__


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


class Builder:
    """Collects the messages of one FileDescriptorProto; a field without a Caffe number is left
    out and named in ``unnumbered``."""

    def __init__(self):
        self.fd = descriptor_pb2.FileDescriptorProto(name="trainnet/caffe.proto", package="caffe",
                                                     syntax="proto2")
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.unnumbered: list[str] = []

    def message(self, name: str) -> descriptor_pb2.DescriptorProto:
        if name not in self.messages:
            self.messages[name] = self.fd.message_type.add(name=name)
        return self.messages[name]

    def field(self, msg: str, key: str, repeated: bool, kind: str, default: Any = None) -> None:
        """Add ``msg.key`` of ``kind``: a scalar name, "Phase", "enum" or a message name."""
        number = FIELDS.get(msg, {}).get(key)
        proto = self.message(msg)
        if number is None:
            self.unnumbered.append(f"{msg}.{key}")
            return
        if any(f.name == key for f in proto.field):
            return
        label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
        f = proto.field.add(name=key, number=number, label=label)
        if kind in SCALARS:
            f.type = SCALARS[kind]
        elif kind == "Phase":
            f.type, f.type_name = F.TYPE_ENUM, ".caffe.Phase"
        elif kind == "enum":
            f.type, f.type_name = F.TYPE_ENUM, self.enum(msg, key)
        else:
            f.type, f.type_name = F.TYPE_MESSAGE, f".caffe.{kind}"
        if default is not None and not repeated and kind in SCALARS | {"enum": 0, "Phase": 0}:
            f.default_value = _default_text(default)

    def enum(self, msg: str, key: str) -> str:
        """The nested enum type of ``msg.key`` (declared once per message)."""
        name, values = ALL_ENUMS[(msg, key)]
        proto = self.message(msg)
        if not any(e.name == name for e in proto.enum_type):
            enum = proto.enum_type.add(name=name)
            for value, number in values.items():
                enum.value.add(name=value, number=number)
        return f".caffe.{msg}.{name}"

    def spec(self, msg: str, key: str, spec: str) -> None:
        """A field given as ``"[repeated] TYPE [DEFAULT]"``."""
        words = spec.split()
        repeated = words[0] == "repeated"
        words = words[1:] if repeated else words
        default = words[1] if len(words) > 1 else None
        self.field(msg, key, repeated, words[0], default)

    def model(self, msg: str, model: type[BaseModel], keys: Optional[list[str]] = None) -> None:
        """Add the fields ``keys`` (default: all but ``SKIP``) of a config model to ``msg``."""
        self.message(msg)
        for key in keys if keys is not None else [k for k in model.model_fields
                                                  if k not in SKIP.get(msg, ())]:
            info = model.model_fields[key]
            repeated, inner = _strip(info.annotation)
            kind = self.kind(msg, model, key, inner)
            if kind is None:
                continue
            default = CAFFE_DEFAULTS.get((msg, key), info.default)
            if default is PydanticUndefined or isinstance(default, (BaseModel, list)):
                default = None
            self.field(msg, key, repeated, kind, default)

    def kind(self, msg: str, model: type[BaseModel], key: str, inner: Any) -> Optional[str]:
        """The field kind ``field`` takes for a schema element type; None (and the field named in
        ``unnumbered``) where there is no Caffe type for it."""
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            sub = _message_of(inner)
            if sub not in PREDEFINED and sub not in self.messages:
                self.model(sub, inner)
            return sub
        if typing.get_origin(inner) is Literal:
            values = typing.get_args(inner)
            if (model, key) in STRING_LITERALS:
                return "string"
            if key == "phase" and set(values) <= set(PHASE):
                return "Phase"
            known = ALL_ENUMS.get((msg, key), ("", {}))[1]
            missing = [f"{msg}.{key}={v}" for v in values if v not in known]
            self.unnumbered += missing
            return None if missing else "enum"
        if inner is int:
            return "int64" if key in INT64_FIELDS else "int32"
        if inner in PY_SCALARS:
            return PY_SCALARS[inner]
        self.unnumbered.append(f"{msg}.{key} ({inner!r}: no protobuf type)")
        return None

    def layer_types(self) -> None:
        """LayerParameter's ``*_param`` fields and their messages, from every layer type's
        ``caffe_params`` (a message many types share holds the union of their fields)."""
        for type_name, cls in sorted(registered().items()):
            claimed = {f for keys in cls.caffe_params.values() if keys for f in keys}
            for field, keys in cls.caffe_params.items():
                if field not in LAYER_PARAMS:
                    self.unnumbered.append(f"LayerParameter.{field} (of {type_name})")
                    continue
                msg = LAYER_PARAMS[field][1]
                self.field("LayerParameter", field, False, msg)
                self.model(msg, cls.Params, list(keys) if keys is not None else
                           [k for k in cls.Params.model_fields if k not in claimed])

    def predefined(self) -> None:
        for name in PREDEFINED:
            proto = self.message(name)
            for key, number, label, ftype, type_name, packed in caffe_pb.MESSAGES[name]:
                f = proto.field.add(name=key, number=number, label=label, type=ftype)
                if type_name:
                    f.type_name = f".caffe.{type_name}"
                if packed:
                    f.options.packed = True


def build() -> Builder:
    """Every message of Caffe's file that trainnet's schema describes, with Caffe's numbers."""
    b = Builder()
    phase = b.fd.enum_type.add(name="Phase")
    for value, number in PHASE.items():
        phase.value.add(name=value, number=number)
    b.model("NetParameter", NetConfig)
    b.layer_types()
    b.model("SolverParameter", SolverConfig)
    for msg, fields in EXTRAS.items():
        for key, spec in fields.items():
            b.spec(msg, key, spec)
    b.predefined()
    return b
