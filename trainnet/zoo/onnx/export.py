"""A trainnet (or Caffe) net as an ONNX model: the TEST phase, layer by layer, exactly.

The net is compiled for TEST (no fusion, no compiler in-place runs), so every step is one layer
of the config with every blob's shape known.  Each step goes through the handler registered
for its Caffe type (``export_ops``); a type or a parameter combination with no exact ONNX form
is refused by name, never approximated.  Layers that only matter in training (losses,
Accuracy, HDF5Output) are left out and named; data layers become graph inputs like Input; tops
that no kept layer reads are the graph's outputs.  The batch axis is the symbolic dim ``N``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.formats.weightkey import weight_key
from trainnet.netcfg import NetConfig, load_net
from trainnet.plan import compile_net
from trainnet.zoo.convert import Converted, preprocess_metadata
from trainnet.zoo.onnx.common import OPSET, require_onnx

BATCH = "N"  # the symbolic batch dim of inputs and outputs
TRAINING_ONLY = {"Accuracy": "accuracy", "HDF5Output": "writes a file"}


class Graph:
    """The ONNX graph being built: nodes, initializers and each Caffe blob's current value."""

    def __init__(self, net: NetConfig, plan, params: dict[str, np.ndarray], onnx):
        self.net, self.plan, self.params, self.onnx = net, plan, params, onnx
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}
        self.values: dict[str, str] = {}      # Caffe blob -> its current ONNX value
        self.uses: dict[str, int] = {}        # ONNX value -> nodes that read it
        self.producer: dict[str, tuple] = {}  # ONNX value -> (node, step)
        self.unbatched: set[str] = set()      # values whose axis 0 is not the batch
        self.across_batch = False             # set by a handler whose layer works across axis 0
        self.reserved: set[str] = set()
        self.last_write: dict[str, int] = {}
        self._count = 0

    # --- names and values ------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}:{self._count}"

    def top(self, step, i: int = 0) -> str:
        """The value name of ``step``'s top ``i``: the blob's own name for its last write."""
        name = step.tops[i]
        if self.last_write.get(name) == step.index and name not in self.reserved:
            self.reserved.add(name)
            return name
        return self.fresh(f"{name}/{step.name}")

    def bottoms(self, step) -> list[str]:
        return [self.values[b] for b in step.bottoms]

    def shape(self, blob: str) -> tuple:
        return tuple(self.plan.blob(blob).shape)

    def const(self, array, hint: str = "const", dtype=np.float32, exact: bool = False) -> str:
        """An initializer named ``hint`` (``exact``, when free) or after it."""
        name = hint if exact and hint not in self.inits else self.fresh(hint)
        self.inits[name] = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        return name

    def ints(self, values, hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), hint, np.int64)

    def param(self, step, j: int, shape: Optional[tuple] = None) -> str:
        """Parameter blob ``j`` of ``step`` as an initializer (reshaped to ``shape``)."""
        key = weight_key(*self.plan.params[step.params[j].slot].key)
        value = np.asarray(self.params[key], dtype=np.float32)
        return self.const(value if shape is None else value.reshape(shape), key, exact=True)

    def node(self, op: str, inputs: list[str], out: Optional[str] = None, step=None,
             n_out: int = 1, **attrs):
        """Append a node; returns its output name (or names when ``n_out`` > 1)."""
        outs = [out] if out is not None and n_out == 1 else list(out or [])
        outs += [self.fresh(op) for _ in range(n_out - len(outs))]
        node = self.onnx.helper.make_node(op, inputs, outs, name=self.fresh(step.name if step else op),
                                          **attrs)
        self.nodes.append(node)
        for name in inputs:
            if name:
                self.uses[name] = self.uses.get(name, 0) + 1
        for name in outs:
            self.producer[name] = (node, step)
        return outs[0] if n_out == 1 else outs

    def error(self, step, message: str) -> TrainnetError:
        return self.net.error(message, step.cfg)


def _kept_steps(plan) -> tuple[list, list[str]]:
    """(the steps exported, a note per left-out layer).  A Split whose every top feeds only
    left-out layers goes too (the label's split before a loss and an accuracy)."""
    dropped, notes = set(), []
    for s in plan.steps:
        why = "a loss" if s.layer.is_loss else TRAINING_ONLY.get(s.type)
        if why:
            dropped.add(s.index)
            notes.append(f"{s.name} ({s.type}: {why})")
    for s in reversed(plan.steps):
        if s.type == "Split" and s.index not in dropped:
            readers = [r for r in plan.steps if set(r.bottoms) & set(s.tops) and r.index > s.index]
            if readers and all(r.index in dropped for r in readers):
                dropped.add(s.index)
    return [s for s in plan.steps if s.index not in dropped], notes


def _outputs(steps) -> list[str]:
    """Blobs no kept step reads after their last write, in order of writing."""
    last: dict[str, int] = {}
    for s in steps:
        if not s.layer.is_data:
            for t in s.tops:
                last[t] = s.index
    read = {b for s in steps for b in s.bottoms if s.index > last.get(b, s.index)}
    return [t for t in last if t not in read]


def _value_info(g: Graph, name: str, blob: str, batched: bool):
    shape = list(g.shape(blob))
    if shape and batched:
        shape[0] = BATCH
    return g.onnx.helper.make_tensor_value_info(name, g.onnx.TensorProto.FLOAT, shape)


def _add_inputs(g: Graph, step, steps: list, notes: list[str]) -> list:
    """A data or Input layer's tops that kept layers read, as graph inputs."""
    read = {b for s in steps if s.index > step.index for b in s.bottoms}
    infos = []
    for t in step.tops:
        if t in read and t not in g.values:
            g.values[t] = t
            g.reserved.add(t)
            infos.append(_value_info(g, t, t, True))
    if step.type != "Input":
        names = ", ".join(t for t in step.tops if t in g.values) or "none"
        notes.append(f"data layer {step.name} ({step.type}) became graph inputs: {names} "
                     "(its reading and transforms are not part of the model)")
    return infos


def _graph(g: Graph, notes: list[str]):
    from trainnet.zoo.onnx.export_ops import HANDLERS, handler
    steps, left_out = _kept_steps(g.plan)
    if left_out:
        notes.append("left out (training only): " + ", ".join(left_out))
    g.last_write = {t: s.index for s in steps for t in s.tops}
    inputs = []
    for step in steps:
        if step.layer.is_data:
            inputs += _add_inputs(g, step, steps, notes)
            continue
        g.across_batch = False
        tops = handler(g, step, HANDLERS)(g, step)
        batched = not g.across_batch and any(g.values[b] not in g.unbatched for b in step.bottoms)
        for blob, value in zip(step.tops, tops):
            g.values[blob] = value
            if not batched:
                g.unbatched.add(value)
    outputs = []
    for blob in _outputs(steps):
        value = g.values[blob]
        outputs.append(_value_info(g, value, blob, value not in g.unbatched))
    if not outputs:
        raise TrainnetError(f"net '{g.net.name}': nothing is left to export once the training "
                            "layers are left out")
    numpy_helper = g.onnx.numpy_helper
    inits = [numpy_helper.from_array(a, n) for n, a in g.inits.items()]
    return g.onnx.helper.make_graph(g.nodes, g.net.name or "trainnet", inputs, outputs, inits)


def export_model(net: NetConfig, params: dict[str, np.ndarray], preprocess=None):
    """``net`` (TEST phase) with ``params`` (by weight key, ``conv1.0``) as an ONNX ModelProto,
    checked by ``onnx.checker`` (full check).  ``preprocess``: the record written to the
    metadata (the net's own when not given); the export's notes go to the metadata too."""
    return _export(net, params, preprocess, [])


def _export(net: NetConfig, params: dict[str, np.ndarray], preprocess, notes: list[str]):
    onnx = require_onnx()
    plan = compile_net(net, "TEST", backward=False, in_place=False, fuse=False)
    g = Graph(net, plan, params, onnx)
    graph = _graph(g, notes)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="trainnet")
    model.ir_version = min(model.ir_version, 8)  # the IR that opset 17 came with
    model.producer_version = _version()
    meta = preprocess_metadata(preprocess or net.preprocess)
    meta["trainnet.notes"] = json.dumps(notes)
    onnx.helper.set_model_props(model, meta)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:  # an exporter's bug, not the user's
        raise RuntimeError(f"the exported model of '{net.name}' fails onnx.checker: {e}") from e
    return model


def _version() -> str:
    from importlib import metadata
    try:
        return metadata.version("trainnet")
    except metadata.PackageNotFoundError:
        return ""


def _params(net: NetConfig, weights: Optional[Path], notes: list[str]):
    """(params by key, the weights file's preprocess record or None)."""
    from trainnet.runtime.params import ParamStore
    from trainnet.solver.weights import EXACT, read_weights
    plan = compile_net(net, "TEST", backward=False, in_place=False, fuse=False)
    store = ParamStore(plan.params, np.random.default_rng(0))
    params = {k: np.array(v) for k, v in store.named().items()}
    if weights is None:
        if params:
            notes.append("no weights given: the parameters are the net's fillers' values "
                         "(seed 0)")
        return params, None
    report, blobs = read_weights(Path(weights), store, EXACT)
    if report.skipped:
        notes.append(f"layers of the weights file not in the net, left out: "
                     f"{', '.join(report.skipped)}")
    params.update(blobs)
    return params, report.metadata.get("preprocess")


def export_onnx(model: str, dst: Path, weights: Optional[Path] = None) -> Converted:
    """The net ``model`` (YAML, prototxt or ``zoo:NAME``) with ``weights`` (.safetensors or
    .caffemodel, accounting for every parameter blob; without, the fillers' values) written
    to ``dst`` as an ONNX model."""
    from trainnet.netcfg.common import Preprocess
    net = load_net(model)
    out = Converted("onnx")
    params, stored = _params(net, weights, out.notes)
    preprocess = net.preprocess
    if preprocess is None and stored:
        preprocess = Preprocess(**json.loads(stored))
    onnx_model = _export(net, params, preprocess, out.notes)
    if preprocess is None:
        out.notes.append("no preprocessing recorded (the net has no preprocess section and the "
                         "weights file none in its metadata)")
    out.notes.insert(0, f"opset {OPSET}, batch dimension dynamic ({BATCH}); "
                     f"{len(onnx_model.graph.node)} nodes, inputs "
                     f"{', '.join(i.name for i in onnx_model.graph.input)}, outputs "
                     f"{', '.join(o.name for o in onnx_model.graph.output)}")
    atomic_write(Path(dst), onnx_model.SerializeToString())
    return out
