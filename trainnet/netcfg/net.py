"""The net config: a list of layers with Caffe's common fields and their type's parameters.

In YAML a layer's type-specific parameters sit directly on the layer (no
``convolution_param:`` nesting); ``parse_net`` splits them off and validates them with the
``Params`` model the layer type registers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import Field, ValidationError, model_validator

from trainnet.errors import ConfigError, ConfigErrors
from trainnet.netcfg.common import (BoolList, FloatList, NetState, NetStateRule, ParamSpec, Preprocess,
                                    Repeated, Strict, StrList, TransformationParameter)
from trainnet.netcfg.errors import located
from trainnet.netcfg.kind import refuse_other_kind
from trainnet.netcfg.layer_types import layer_class
from trainnet.netcfg.prototxt import is_prototxt, read_file, read_net
from trainnet.netcfg.source import SourceMap, load_yaml, load_yaml_text
from trainnet.registry import Registry


class LayerConfig(Strict):
    """One layer: Caffe's LayerParameter with its type's parameters in ``params``.  Defaults come
    from factories: pydantic deep-copies a mutable default for every layer, which was most of the
    time a 40,000-layer net took to load."""

    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    bottom: StrList = Field(default_factory=list)
    top: StrList = Field(default_factory=list)
    param: Repeated[ParamSpec] = Field(default_factory=list)
    include: Repeated[NetStateRule] = Field(default_factory=list)
    exclude: Repeated[NetStateRule] = Field(default_factory=list)
    loss_weight: FloatList = Field(default_factory=list)
    propagate_down: BoolList = Field(default_factory=list)
    transform_param: TransformationParameter = Field(default_factory=TransformationParameter)
    params: Strict
    line: Optional[int] = None  # where the layer starts in its file (for graph errors)

    @model_validator(mode="after")
    def _include_or_exclude(self):
        if self.include and self.exclude:
            raise ValueError("give include rules or exclude rules, not both (as in Caffe)")
        return self

    def error(self, message: str, file: Optional[str] = None, field: Optional[str] = None) -> ConfigError:
        return ConfigError(message, file=file, line=self.line, layer=self.name,
                           layer_type=self.type, field=field)


COMMON_KEYS = tuple(k for k in LayerConfig.model_fields if k not in ("params", "line"))


class NetConfig(Strict):
    name: str = ""
    layer: list[LayerConfig] = []
    state: NetState = NetState()
    force_backward: bool = False
    preprocess: Optional[Preprocess] = None  # trainnet's record of the input preparation
    file: Optional[str] = None  # the file it was read from; relative paths resolve against it

    @property
    def base_dir(self) -> Path:
        return Path(self.file).resolve().parent if self.file else Path.cwd()

    def error(self, message: str, layer: Optional[LayerConfig] = None, field: Optional[str] = None):
        if layer is None:
            return ConfigError(message, file=self.file, field=field)
        return layer.error(message, file=self.file, field=field)


def parse_layer(data: Any, src: SourceMap, index: int) -> LayerConfig:
    path = ("layer", index)
    if path in src.errors:
        raise src.errors[path]
    if not isinstance(data, dict):
        raise src.error(path, f"layer #{index}: expects a mapping of fields, got {type(data).__name__}")
    name = data.get("name") if isinstance(data.get("name"), str) else f"#{index}"
    type_name = data.get("type")
    if not isinstance(type_name, str):
        raise src.error(path + ("type",), "required (a layer type such as Convolution)",
                        layer=name, field="type")
    try:
        cls = layer_class(type_name)
    except KeyError as exc:
        raise src.error(path + ("type",), exc.args[0], layer=name, field="type") from None

    common = {k: v for k, v in data.items() if k in COMMON_KEYS}
    rest = {k: v for k, v in data.items() if k not in COMMON_KEYS}
    nested = [k for k in rest if k.endswith("_param")]
    if nested:
        raise src.error(path + (nested[0],), "in YAML a layer's parameters sit directly on the "
                        "layer; move its fields up one level", layer=name, layer_type=type_name,
                        field=nested[0])
    known = set(COMMON_KEYS) | set(cls.Params.model_fields)
    try:
        params = cls.Params.model_validate(rest)
    except ValidationError as exc:
        raise located(exc, src, path, layer=name, layer_type=type_name, known_keys=known,
                      model=cls.Params) from None
    try:
        return LayerConfig.model_validate({**common, "params": params, "line": src.line(path)})
    except ValidationError as exc:
        raise located(exc, src, path, layer=name, layer_type=type_name, known_keys=known,
                      model=LayerConfig) from None


NET_KEYS = ("name", "layer", "state", "force_backward", "preprocess")


def parse_net(data: Any, src: SourceMap) -> NetConfig:
    if not isinstance(data, dict):
        raise src.error((), f"a net config is a mapping with keys {', '.join(NET_KEYS)}")
    if "layers" in data and "layer" not in data:
        raise src.error(("layers",), "layers: the list of layers is named 'layer' (as in Caffe)")
    raw_layers = data.get("layer", [])
    if not isinstance(raw_layers, list):
        raise src.error(("layer",), "layer: expects a list of layers")
    layers, errors = [], []
    for i, d in enumerate(raw_layers):  # every bad layer is reported, not only the first
        try:
            layers.append(parse_layer(d, src, i))
        except ConfigError as exc:
            errors.append(exc)
    rest = {k: v for k, v in data.items() if k != "layer"}
    try:
        net = NetConfig.model_validate({**rest, "layer": [] if errors else layers, "file": src.file})
    except ValidationError as exc:
        errors.append(located(exc, src, known_keys=NET_KEYS, model=NetConfig))
    if errors:
        raise ConfigErrors.of(errors)
    return net


NET_SCHEMES = Registry("net scheme")
"""``SCHEME:NAME`` net names -> the function giving NAME's file.  trainnet.zoo registers ``zoo``
(``zoo:lenet``) when imported, as netcfg sits below the zoo in the data flow."""


def net_file(path: str | Path) -> str | Path:
    """The file ``path`` names: itself, or for ``SCHEME:NAME`` the file its scheme gives."""
    scheme, sep, name = str(path).partition(":")
    if sep and scheme in NET_SCHEMES.entries:
        return NET_SCHEMES[scheme](name)
    if sep and scheme == "zoo":
        raise RuntimeError(f"{path}: no model zoo is registered for zoo:NAME: import trainnet.zoo "
                           "(it registers the zoo: scheme) before loading a net by its zoo name")
    return path


def load_net(path: str | Path) -> NetConfig:
    """A net from a YAML or prototxt file (by suffix), or ``zoo:NAME`` for a zoo net."""
    path = net_file(path)
    if is_prototxt(path):
        return load_net_text(read_file(path), str(path))
    data, src = load_yaml(path)
    refuse_other_kind(data, src, "net")
    return parse_net(data, src)


def load_net_text(text: str, file: str = "<string>") -> NetConfig:
    """A net from text: prototxt when ``file`` has a prototxt suffix, else YAML."""
    data, src = read_net(text, file) if is_prototxt(file) else load_yaml_text(text, file)
    refuse_other_kind(data, src, "net")
    return parse_net(data, src)


def dump_layer(layer: LayerConfig) -> dict:
    """The YAML form of a layer: common fields then its parameters, defaults left out."""
    out = layer.model_dump(exclude={"params", "line"}, exclude_defaults=True)
    out = {"name": layer.name, "type": layer.type, **out}
    out.update(layer.params.model_dump(exclude_defaults=True))
    return out


def dump_net(net: NetConfig) -> dict:
    out = net.model_dump(exclude={"layer", "file"}, exclude_defaults=True)
    out["layer"] = [dump_layer(l) for l in net.layer]
    return out
