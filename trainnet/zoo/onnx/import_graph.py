"""An ONNX graph made ready for mapping: checked, brought to trainnet's opset, its inputs given
fixed shapes, every tensor's shape inferred, and every node that computes only from constants
(shape arithmetic, Constant, Shape of a known shape) folded into a constant."""

from __future__ import annotations

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.zoo.onnx.common import OPSET
from trainnet.zoo.onnx.import_context import attributes

NO_FOLD = {"If", "Loop", "Scan", "RandomNormal", "RandomUniform", "RandomNormalLike",
           "RandomUniformLike", "Multinomial", "Bernoulli"}


def opset_of(model) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def normalise(onnx, model, label: str):
    """The model checked and at OPSET (a copy); the notes say what changed."""
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and protobuf errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainnetError(f"{label}: not a valid ONNX model ({first})") from None
    opset, notes = opset_of(model), []
    if opset is not None and opset != OPSET:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as exc:  # the converter's assertion: keep its reason, not its source
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrainnetError(f"{label}: cannot bring the model from opset {opset} to "
                                f"{OPSET}: {reason.split('failed: ', 1)[-1]}") from None
        notes.append(f"the model's opset {opset} was converted to {OPSET}")
    else:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    return model, notes


def fix_inputs(model, label: str) -> tuple[list[tuple[str, tuple[int, ...]]], list[str]]:
    """The graph inputs that are not initializers, with their shapes; a symbolic batch (first)
    dimension is set to 1 in ``model`` (noted), any other symbolic dimension refused."""
    inits = {t.name for t in model.graph.initializer}
    inputs, notes = [], []
    for value in model.graph.input:
        if value.name in inits:
            continue
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            raise TrainnetError(f"{label}: input '{value.name}' has no tensor shape")
        dims = value.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if i > 0:
                raise TrainnetError(f"{label}: input '{value.name}' dimension {i} is symbolic "
                                    f"({d.dim_param or '?'}); trainnet needs a fixed input size")
            notes.append(f"input '{value.name}' has a symbolic batch ({d.dim_param or '?'}): "
                         "set to 1, the Input's first dim (edit it in the YAML)")
            d.Clear()
            d.dim_value = 1
        inputs.append((value.name, tuple(d.dim_value for d in dims)))
    if not inputs:
        raise TrainnetError(f"{label}: the graph has no input that is not an initializer")
    return inputs, notes


def _shapes(onnx, model, consts: dict) -> dict[str, tuple[int, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        t = value.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in t.shape.dim)
    shapes.update({k: v.shape for k, v in consts.items()})
    return shapes


def _evaluate(onnx_ref, node, consts: dict, shapes: dict, label: str):
    """The outputs of ``node`` by name when they follow from constants and known shapes."""
    inputs = [n for n in node.input if n]
    if node.op_type in ("Shape", "Size") and inputs and inputs[0] in shapes:
        attrs = attributes(node)
        dims = shapes[inputs[0]]
        value = (np.array(dims[attrs.get("start", 0):attrs.get("end", len(dims))], np.int64)
                 if node.op_type == "Shape" else np.array(int(np.prod(dims)), np.int64))
        return {node.output[0]: value}
    if node.op_type in NO_FOLD or not all(n in consts for n in inputs):
        return None
    if not inputs and node.op_type not in ("Constant", "ConstantOfShape"):
        return None
    try:
        values = onnx_ref.ReferenceEvaluator(node).run(None, {n: consts[n] for n in inputs})
    except Exception as exc:
        raise TrainnetError(f"{label}: cannot evaluate it on its constant inputs: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    return {name: np.asarray(v) for name, v in zip(node.output, values) if name}


def fold_constants(onnx, model, labels: dict[int, str]):
    """(constants by tensor name, shapes by tensor name, the nodes left with their graph index,
    the number folded).  Folding and shape inference alternate until nothing more folds."""
    import onnx.reference as onnx_ref
    from onnx import numpy_helper
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = list(enumerate(graph.node))
    folded = 0
    while True:
        shapes = _shapes(onnx, model, consts)
        kept = []
        for index, node in nodes:
            values = _evaluate(onnx_ref, node, consts, shapes, labels[index])
            if values is None:
                kept.append((index, node))
            else:
                consts.update(values)
                shapes.update({k: v.shape for k, v in values.items()})
                folded += 1
        if len(kept) == len(nodes):
            return consts, shapes, nodes, folded
        nodes = kept
        del graph.node[:]
        graph.node.extend(n for _, n in nodes)
        done = {t.name for t in graph.initializer}
        graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k)
                                 for k, v in consts.items() if k not in done)
