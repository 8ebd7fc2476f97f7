"""Reading Caffe's prototxt (protobuf text format) into the same data the YAML reader makes.

The text is parsed by ``text_format`` (which keeps every value's line); the result is plain
Python data plus a ``SourceMap``, exactly what ``load_yaml`` returns, so the same pydantic models
validate both and report errors the same way.

What the reader does besides parsing:
- a layer's ``convolution_param { ... }`` (any message its type lists in ``caffe_params``) is
  flattened onto the layer, as YAML writes it; a message another type owns is refused by name;
- the legacy V1 form (``layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 ... }``) is
  upgraded as Caffe's ``UpgradeV1Net`` does: enum types become type strings, ``blobs_lr`` and
  ``weight_decay`` become ``param { lr_mult decay_mult }``, ``param: "w"`` names the blobs;
- net-level ``input``/``input_dim``/``input_shape`` become an Input layer (``UpgradeNetInput``);
- ``scale``/``mean_file``/``crop_size``/``mirror`` in a data layer's own message move to its
  ``transform_param`` (``UpgradeNetDataTransformation``, in ``upgrade``);
- a layer it cannot read is recorded in the source map's ``errors`` and the rest read on, so that
  every bad layer is reported together;
- in a solver, the legacy ``solver_type: ADAM`` enum becomes ``type: "Adam"``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Union

from trainnet.errors import ConfigError
from trainnet.formats.caffe_types import V1_TYPES
from trainnet.netcfg.layer_types import registered
from trainnet.netcfg.source import SourceMap, read_config_text
from trainnet.netcfg.text_format import Field, parse_text, to_data
from trainnet.netcfg.upgrade import upgrade_data_transformation

SUFFIXES = (".prototxt", ".pbtxt", ".prototext")

# SolverParameter.SolverType -> SolverParameter.type
SOLVER_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}

# A solver's inline nets (NetParameter messages), read as net files are.
SOLVER_NETS = ("net_param", "train_net_param", "test_net_param")


# --- nets ------------------------------------------------------------------------------------

def _upgrade_v1(layer: list[Field], file: str) -> list[Field]:
    """A V1 ``layers { }`` entry in the current form (Caffe's UpgradeV1LayerParameter)."""
    out: list[Field] = []
    specs: dict[str, list[Field]] = {}  # per blob index: its ParamSpec fields
    n_specs = {"param": 0, "blobs_lr": 0, "weight_decay": 0}
    layer_name = next((f.value for f in layer if f.key == "name" and not f.message), None)
    for f in layer:
        if f.key == "layer":
            raise ConfigError("a V0 layer (layers { layer { ... } }): upgrade the file with Caffe's "
                              "upgrade_net_proto_text first", file=file, line=f.line, layer=layer_name)
        if f.key == "type" and not f.message:
            name = str(f.value)
            if name not in V1_TYPES:
                raise ConfigError(f"unknown V1 layer type {name!r}; known: "
                                  + ", ".join(sorted(V1_TYPES)), file=file, line=f.line,
                                  layer=layer_name, field="type")
            out.append(Field("type", V1_TYPES[name], f.line))
        elif f.key in n_specs:
            key = {"param": "name", "blobs_lr": "lr_mult", "weight_decay": "decay_mult"}[f.key]
            index = n_specs[f.key]
            n_specs[f.key] += 1
            specs.setdefault(index, []).append(Field(key, f.value, f.line))
        else:
            out.append(f)
    for index in sorted(specs):
        out.append(Field("param", specs[index], specs[index][0].line, message=True))
    return out


def _net_inputs(fields: list[Field], file: str) -> tuple[list[Field], list[Field]]:
    """Net-level ``input``/``input_dim``/``input_shape`` as an Input layer (UpgradeNetInput)."""
    inputs = [f for f in fields if f.key == "input"]
    dims = [f for f in fields if f.key == "input_dim"]
    shapes = [f for f in fields if f.key == "input_shape"]
    rest = [f for f in fields if f.key not in ("input", "input_dim", "input_shape")]
    if not inputs:
        if dims or shapes:
            raise ConfigError("input_dim/input_shape without input", file=file, line=(dims or shapes)[0].line)
        return rest, []
    line = inputs[0].line
    if dims:
        if len(dims) != 4 * len(inputs):
            raise ConfigError(f"{len(inputs)} inputs need {4 * len(inputs)} input_dim values, got "
                              f"{len(dims)}", file=file, line=dims[0].line)
        shapes = [Field("input_shape", [Field("dim", d.value, d.line) for d in dims[4 * i:4 * i + 4]],
                        dims[4 * i].line, message=True) for i in range(len(inputs))]
    if len(shapes) != len(inputs):
        raise ConfigError(f"{len(inputs)} inputs but {len(shapes)} input shapes", file=file, line=line)
    layer = [Field("name", "input", line), Field("type", "Input", line)]
    layer += [Field("top", f.value, f.line) for f in inputs]
    layer += [Field("shape", s.value, s.line, message=True) for s in shapes]
    return rest, [Field("layer", layer, line, message=True)]


def _flatten_params(layer: list[Field], file: str) -> list[Field]:
    """Move the fields of the layer's own parameter messages onto the layer."""
    type_name = next((f.value for f in layer if f.key == "type" and not f.message), None)
    name = next((f.value for f in layer if f.key == "name" and not f.message), None)
    cls = registered().get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        return layer  # parse_layer reports the unknown (or missing) type with its line
    owners = _param_owners()
    out: list[Field] = []
    claimed: dict[str, int] = {}
    for f in layer:
        if f.key.endswith("_param") and f.key != "transform_param":
            if f.key not in cls.caffe_params:
                if f.key in owners:
                    hint = (f"its parameters go in {', '.join(cls.caffe_params)}"
                            if cls.caffe_params else "it takes no parameters")
                    why = f"belongs to {', '.join(sorted(owners[f.key]))}; {hint}"
                else:
                    why = "unknown parameter message"
                raise ConfigError(why, file=file, line=f.line, layer=name, layer_type=type_name,
                                  field=f.key)
            if not f.message:
                raise ConfigError("expects a message { ... }", file=file, line=f.line, layer=name,
                                  layer_type=type_name, field=f.key)
            allowed = cls.caffe_params[f.key]
            for inner in f.value:
                if allowed is not None and inner.key not in allowed:
                    raise ConfigError(f"unknown key; {f.key} holds {', '.join(allowed)} for this type",
                                      file=file, line=inner.line, layer=name, layer_type=type_name,
                                      field=f"{f.key}.{inner.key}")
                if inner.key in claimed and claimed[inner.key] != id(f):
                    raise ConfigError(f"given twice (also at line {_first_line(out, inner.key)})",
                                      file=file, line=inner.line, layer=name, layer_type=type_name,
                                      field=inner.key)
                claimed[inner.key] = id(f)
                out.append(inner)
        else:
            if f.key in claimed:
                raise ConfigError("given twice", file=file, line=f.line, layer=name,
                                  layer_type=type_name, field=f.key)
            out.append(f)
    return out


def _first_line(fields: list[Field], key: str) -> int:
    return next(f.line for f in fields if f.key == key)


@functools.cache
def _param_owners() -> dict[str, frozenset[str]]:
    """Each parameter message name -> the layer types that read it (made once: the registry is
    complete once trainnet.layers is imported)."""
    owners: dict[str, set[str]] = {}
    for type_name, cls in registered().items():
        for message in cls.caffe_params:
            owners.setdefault(message, set()).add(type_name)
    return {message: frozenset(types) for message, types in owners.items()}


def read_net(text: str, file: str) -> tuple[dict, SourceMap]:
    """A net prototxt as the data ``parse_net`` validates, with its source map."""
    errors: dict = {}
    data, lines = read_net_fields(parse_text(text, file), file, errors)
    return data, SourceMap(file, lines, errors)


def _read_layer(f: Field, file: str) -> list[Field]:
    """One ``layer``/``layers`` entry: upgraded to the current form, parameters flattened."""
    if not f.message:
        raise ConfigError(f"{f.key}: expects a message {{ ... }}", file=file, line=f.line)
    v1 = f.key == "layers"
    body = _upgrade_v1(f.value, file) if v1 else f.value
    return _flatten_params(upgrade_data_transformation(body, file, v1), file)


def read_net_fields(fields: list[Field], file: str, errors: dict, path: tuple = (),
                    line: int = 1) -> tuple[dict, dict]:
    """A net given as parsed fields (a file's, or a solver's ``net_param { ... }`` at ``path``,
    starting at ``line``): the data ``parse_net`` validates and the lines of its paths.  A layer
    it cannot read goes into ``errors`` by its path, read as empty."""
    v1 = [f for f in fields if f.key == "layers"]
    current = [f for f in fields if f.key == "layer"]
    if v1 and current:
        raise ConfigError("mixes V1 'layers' and current 'layer' entries", file=file, line=v1[0].line)
    rest, input_layer = _net_inputs(fields, file)
    layers = []
    for f in input_layer + [g for g in rest if g.key in ("layer", "layers")]:
        try:
            body = _read_layer(f, file)
        except ConfigError as exc:
            errors[path + ("layer", len(layers))] = exc
            body = []
        layers.append(Field("layer", body, f.line, message=True))
    others = [f for f in rest if f.key not in ("layer", "layers")]
    lines: dict = {}
    data = to_data(others, path, lines)
    data["layer"] = []
    lines[path + ("layer",)] = layers[0].line if layers else line
    for i, f in enumerate(layers):
        lines[path + ("layer", i)] = f.line
        data["layer"].append(to_data(f.value, path + ("layer", i), lines))
    lines[path] = line
    return data, lines


def read_solver(text: str, file: str) -> tuple[dict, SourceMap]:
    """A solver prototxt as the data ``parse_solver`` validates, with its source map."""
    fields = parse_text(text, file)
    out = []
    for f in fields:
        if f.key == "solver_type":
            if f.value not in SOLVER_TYPES:
                raise ConfigError(f"solver_type: unknown {f.value!r}; known: "
                                  + ", ".join(SOLVER_TYPES), file=file, line=f.line)
            if any(g.key == "type" for g in fields):
                raise ConfigError("give type or the legacy solver_type, not both", file=file, line=f.line)
            out.append(Field("type", SOLVER_TYPES[f.value], f.line))
        elif f.key not in SOLVER_NETS:
            out.append(f)
    lines: dict = {(): 1}
    errors: dict = {}
    data = to_data(out, (), lines)
    for f in fields:  # inline nets: read as net files are (V1 upgrade, parameter messages)
        if f.key not in SOLVER_NETS:
            continue
        if not f.message:
            raise ConfigError(f"{f.key}: expects a message {{ ... }}", file=file, line=f.line)
        if f.key in data and f.key != "test_net_param":
            raise ConfigError(f"{f.key}: given twice", file=file, line=f.line)
        lines.setdefault((f.key,), f.line)
        if f.key == "test_net_param":  # repeated: always a list
            path = (f.key, len(data.setdefault(f.key, [])))
            net, net_lines = read_net_fields(f.value, file, errors, path, f.line)
            data[f.key].append(net)
        else:
            net, net_lines = read_net_fields(f.value, file, errors, (f.key,), f.line)
            data[f.key] = net
        lines.update(net_lines)
    return data, SourceMap(file, lines, errors)


def is_prototxt(path: Union[str, Path]) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def read_file(path: Union[str, Path]) -> str:
    """A prototxt file's text (bounded, refused unread when not a regular file)."""
    return read_config_text(path)
