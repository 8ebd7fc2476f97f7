"""Reading Caffe's prototxt (protobuf text format) into the same data the YAML reader makes.

A net or solver prototxt is tokenized by hand rather than by protobuf's text parser, because
that parser keeps no line numbers for the values it reads, and every error here must name its
line.  The result is plain Python data plus a ``SourceMap``, exactly what ``load_yaml`` returns,
so the same pydantic models validate both and report errors the same way.

What the reader does besides parsing:
- a layer's ``convolution_param { ... }`` (any message its type lists in ``caffe_params``) is
  flattened onto the layer, as YAML writes it; a message another type owns is refused by name;
- the legacy V1 form (``layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 ... }``) is
  upgraded as Caffe's ``UpgradeV1Net`` does: enum types become type strings, ``blobs_lr`` and
  ``weight_decay`` become ``param { lr_mult decay_mult }``, ``param: "w"`` names the blobs;
- net-level ``input``/``input_dim``/``input_shape`` become an Input layer (``UpgradeNetInput``);
- in a solver, the legacy ``solver_type: ADAM`` enum becomes ``type: "Adam"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from trainnet.errors import ConfigError
from trainnet.netcfg.source import SourceMap

SUFFIXES = (".prototxt", ".pbtxt", ".prototext")

# V1LayerParameter.LayerType (caffe.proto) -> the type string of the current LayerParameter.
V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# SolverParameter.SolverType -> SolverParameter.type
SOLVER_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


@dataclass
class Field:
    """One ``key: value`` or ``key { ... }`` of a message, with the line it starts on."""

    key: str
    value: Union[Any, list["Field"]]  # a scalar, or the fields of a nested message
    line: int
    message: bool = False


# --- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+|\#[^\n]*) |
    (?P<newline>\n) |
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?[fF]?(?![\w.])|[-+]?(?:inf|nan)\b) |
    (?P<ident>[A-Za-z_][\w.]*) |
    (?P<symbol>[{}<>:\[\],;])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def _tokens(text: str, file: str) -> list[tuple[str, Any, int]]:
    out, line, pos = [], 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConfigError(f"prototxt syntax error: unexpected {text[pos]!r}", file=file, line=line)
        kind, raw = m.lastgroup, m.group()
        pos = m.end()
        if kind == "newline":
            line += 1
        elif kind == "string":
            body = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), raw[1:-1])
            if out and out[-1][0] == "string":  # adjacent strings concatenate, as in protobuf
                out[-1] = ("string", out[-1][1] + body, out[-1][2])
            else:
                out.append(("string", body, line))
        elif kind == "number":
            out.append(("number", _number(raw), line))
        elif kind in ("ident", "symbol"):
            out.append((kind, raw, line))
    return out


def _number(raw: str) -> Union[int, float]:
    text = raw.rstrip("fF") if not raw.lower().endswith(("inf", "nan")) else raw
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return float(text)


class _Parser:
    def __init__(self, text: str, file: str):
        self.toks, self.i, self.file = _tokens(text, file), 0, file

    def error(self, message: str) -> ConfigError:
        line = self.toks[min(self.i, len(self.toks) - 1)][2] if self.toks else None
        return ConfigError(f"prototxt syntax error: {message}", file=self.file, line=line)

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", None, None)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if (kind and tok[0] != kind) or (value and tok[1] != value):
            found = "the end of the file" if tok[0] == "end" else repr(tok[1])
            raise self.error(f"expected {value or kind}, found {found}")
        self.i += 1
        return tok

    def message(self, close: str | None) -> list[Field]:
        fields = []
        while True:
            kind, value, line = self.peek()
            if close is None and kind == "end":
                return fields
            if kind == "symbol" and value == close:
                self.i += 1
                return fields
            if kind == "symbol" and value in ",;":
                self.i += 1
                continue
            if kind != "ident":
                raise self.error(f"expected a field name, found {'the end of the file' if kind == 'end' else repr(value)}")
            self.i += 1
            fields.extend(self.field(value, line))

    def field(self, key: str, line: int) -> list[Field]:
        kind, value, _ = self.peek()
        if kind == "symbol" and value == ":":
            self.i += 1
            kind, value, _ = self.peek()
            if kind == "symbol" and value == "[":  # key: [a, b] or key: [{...}, {...}]
                self.i += 1
                items = []
                while not (self.peek()[0] == "symbol" and self.peek()[1] == "]"):
                    items.extend(self.field(key, self.peek()[2] or line))
                    if self.peek()[1] == ",":
                        self.i += 1
                self.i += 1
                return items
        if kind == "symbol" and value in "{<":
            self.i += 1
            return [Field(key, self.message("}" if value == "{" else ">"), line, message=True)]
        if kind in ("string", "number"):
            self.i += 1
            return [Field(key, value, line)]
        if kind == "ident":
            self.i += 1
            return [Field(key, {"true": True, "false": False}.get(value, value), line)]
        raise self.error(f"expected a value for '{key}'")


def parse_text(text: str, file: str) -> list[Field]:
    """The fields of a whole prototxt document."""
    return _Parser(text, file).message(None)


# --- to plain data ---------------------------------------------------------------------------

def to_data(fields: list[Field], path: tuple, lines: dict) -> dict:
    """Fields as a dict: a key given once holds its value, a key given more than once a list
    (Caffe's repeated fields; the config models accept a lone value for a repeated field)."""
    grouped: dict[str, list[Field]] = {}
    for f in fields:
        grouped.setdefault(f.key, []).append(f)
    out: dict[str, Any] = {}
    for key, group in grouped.items():
        lines[path + (key,)] = group[0].line
        if len(group) == 1:
            out[key] = _value(group[0], path + (key,), lines)
        else:
            out[key] = []
            for i, f in enumerate(group):
                lines[path + (key, i)] = f.line
                out[key].append(_value(f, path + (key, i), lines))
    return out


def _value(f: Field, path: tuple, lines: dict) -> Any:
    return to_data(f.value, path, lines) if f.message else f.value


# --- nets ------------------------------------------------------------------------------------

def _upgrade_v1(layer: list[Field], file: str) -> list[Field]:
    """A V1 ``layers { }`` entry in the current form (Caffe's UpgradeV1LayerParameter)."""
    out: list[Field] = []
    specs: dict[str, list[Field]] = {}  # per blob index: its ParamSpec fields
    n_specs = {"param": 0, "blobs_lr": 0, "weight_decay": 0}
    for f in layer:
        if f.key == "layer":
            raise ConfigError("a V0 layer (layers { layer { ... } }): upgrade the file with Caffe's "
                              "upgrade_net_proto_text first", file=file, line=f.line)
        if f.key == "type" and not f.message:
            name = str(f.value)
            if name not in V1_TYPES:
                raise ConfigError(f"type: unknown V1 layer type {name!r}; known: "
                                  + ", ".join(sorted(V1_TYPES)), file=file, line=f.line)
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
    from trainnet.layers.base import LAYERS, known_types

    type_name = next((f.value for f in layer if f.key == "type" and not f.message), None)
    name = next((f.value for f in layer if f.key == "name" and not f.message), None)
    known_types()  # registers every layer module
    cls = LAYERS.entries.get(type_name) if isinstance(type_name, str) else None
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


def _param_owners() -> dict[str, set[str]]:
    """Each parameter message name -> the layer types that read it."""
    from trainnet.layers.base import LAYERS, known_types

    known_types()  # registers every layer module
    owners: dict[str, set[str]] = {}
    for type_name, cls in LAYERS.entries.items():
        for message in cls.caffe_params:
            owners.setdefault(message, set()).add(type_name)
    return owners


def read_net(text: str, file: str) -> tuple[dict, SourceMap]:
    """A net prototxt as the data ``parse_net`` validates, with its source map."""
    fields = parse_text(text, file)
    v1 = [f for f in fields if f.key == "layers"]
    current = [f for f in fields if f.key == "layer"]
    if v1 and current:
        raise ConfigError("mixes V1 'layers' and current 'layer' entries", file=file, line=v1[0].line)
    rest, input_layer = _net_inputs(fields, file)
    layers = []
    for f in input_layer + [g for g in rest if g.key in ("layer", "layers")]:
        if not f.message:
            raise ConfigError(f"{f.key}: expects a message {{ ... }}", file=file, line=f.line)
        body = _upgrade_v1(f.value, file) if f.key == "layers" else f.value
        layers.append(Field("layer", _flatten_params(body, file), f.line, message=True))
    others = [f for f in rest if f.key not in ("layer", "layers")]
    lines: dict = {}
    data = to_data(others, (), lines)
    data["layer"] = []
    lines[("layer",)] = layers[0].line if layers else 1
    for i, f in enumerate(layers):
        lines[("layer", i)] = f.line
        data["layer"].append(to_data(f.value, ("layer", i), lines))
    lines[()] = 1
    return data, SourceMap(file, lines)


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
        else:
            out.append(f)
    lines: dict = {(): 1}
    return to_data(out, (), lines), SourceMap(file, lines)


def is_prototxt(path: Union[str, Path]) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def read_file(path: Union[str, Path]) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
