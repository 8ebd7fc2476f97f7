"""ONNX export: every zoo net at seeded random weights run in ONNX Runtime (batch 1 and 2, the
batch dimension dynamic) against trainnet's own forward; the export's notes, metadata and
errors.  (Each layer type's handler and its variants: test_onnx_export_layers.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from trainnet.errors import TrainnetError  # noqa: E402
from trainnet.formats.weightkey import weight_key  # noqa: E402
from trainnet.netcfg import load_net  # noqa: E402
from trainnet.netcfg.net import load_net_text  # noqa: E402
from trainnet.plan import compile_net  # noqa: E402
from trainnet.runtime.net import Net  # noqa: E402
from trainnet.zoo.onnx.export import export_model, export_onnx  # noqa: E402  (and zoo:NAME)

ZOO = ["lenet", "cifar10_quick", "cifar10_full", "alexnet", "caffenet", "squeezenet_v1_0",
       "squeezenet_v1_1", "mobilenet_v1", "resnet50", "googlenet", "vgg16"]


def with_batch(net, n: int):
    """``net`` with every Input layer's blobs of batch ``n``."""
    layers = []
    for layer in net.layer:
        if layer.type == "Input":
            shapes = [s.model_copy(update={"dim": [n] + list(s.dim[1:])})
                      for s in layer.params.shape]
            layer = layer.model_copy(update={"params": layer.params.model_copy(
                update={"shape": shapes})})
        layers.append(layer)
    return net.model_copy(update={"layer": layers})


def random_params(net, seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal weights, small biases; BatchNorm's blobs a positive variance and factor 1;
    a Scale's gamma near 1."""
    rng = np.random.default_rng(seed)
    plan = compile_net(net, "TEST", backward=False, fuse=False)
    types = {s.name: s.type for s in plan.steps}
    params = {}
    for slot in plan.params:
        layer, j = slot.key
        shape = tuple(slot.shape)
        if types[layer] == "BatchNorm":
            value = [rng.normal(0, 0.5, shape), rng.uniform(0.5, 1.5, shape), np.ones(shape)][j]
        elif types[layer] == "Scale" and j == 0:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            value = rng.standard_normal(shape, np.float32) * np.float32(
                math.sqrt(2 / math.prod(shape[1:])))
        else:
            value = rng.normal(0, 0.1, shape)
        params[weight_key(layer, j)] = value.astype(np.float32)
    return params


def trainnet_forward(net, params, inputs: dict[str, np.ndarray], blobs) -> dict[str, np.ndarray]:
    run = Net(compile_net(net, "TEST", backward=False, reuse_memory=False))
    for key, value in params.items():
        run.params.assign(key, value)
    for name, value in inputs.items():
        run.set_input(name, value)
    run.forward()
    return {b: np.array(run.data(b)) for b in blobs}


def session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def onnx_forward(run, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in run.get_outputs()]
    return dict(zip(names, run.run(names, inputs)))


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_net(net, params, batches=(1, 2), seed: int = 1, tol: float = 1e-4, scale: float = 1):
    """Export ``net`` once, then run it in ONNX Runtime and trainnet at each batch size; every
    graph output within ``tol`` relative (L2) of trainnet's blob of the same name."""
    model = export_model(net, params)
    run, rng = session(model), np.random.default_rng(seed)
    for n in batches:
        sized = with_batch(net, n)
        plan = compile_net(sized, "TEST", backward=False)
        inputs = {i.name: (rng.standard_normal(plan.blob(i.name).shape) * scale).astype(np.float32)
                  for i in model.graph.input}
        got = onnx_forward(run, inputs)
        want = trainnet_forward(sized, params, inputs, got)
        for name in got:
            assert got[name].shape == want[name].shape, name
            assert relative(got[name], want[name]) < tol, (name, n, relative(got[name], want[name]))
    return model


@pytest.mark.parametrize("name", ZOO)
def test_zoo_net_matches_trainnet(name):
    net = load_net(f"zoo:{name}")
    model = check_net(net, random_params(net))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert model.opset_import[0].version == 17 and model.producer_name == "trainnet"


TRAIN_TEST = """
name: small
layer:
  - {name: data, type: DummyData, top: [data, label], shape: [{dim: [2, 3, 8, 8]}, {dim: [2]}]}
  - {name: conv, type: Convolution, bottom: data, top: conv, num_output: 4, kernel_size: 3,
     weight_filler: {type: gaussian, std: 0.1}}
  - {name: relu, type: ReLU, bottom: conv, top: conv}
  - {name: fc, type: InnerProduct, bottom: conv, top: fc, num_output: 5,
     weight_filler: {type: xavier}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [fc, label], top: loss}
  - {name: acc, type: Accuracy, bottom: [fc, label], top: acc}
preprocess: {channel_order: BGR, raw_scale: 255.0, mean_value: [104.0, 117.0, 123.0]}
"""


def small_net(text: str = TRAIN_TEST):
    return load_net_text(text)


def test_training_layers_left_out_and_named(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(TRAIN_TEST)
    out = export_onnx(str(path), tmp_path / "small.onnx")
    text = "\n".join(out.notes)
    assert out.kind == "onnx"
    assert "loss (SoftmaxWithLoss: a loss)" in text and "acc (Accuracy: accuracy)" in text
    assert "data layer data (DummyData) became graph inputs: data" in text
    assert "fillers" in text
    model = onnx.load(str(tmp_path / "small.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["data"]
    assert [o.name for o in model.graph.output] == ["fc"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["preprocess"])["mean_value"] == [104.0, 117.0, 123.0]
    assert json.loads(meta["preprocess"])["channel_order"] == "BGR"


def test_weights_file_must_hold_every_blob(tmp_path):
    from trainnet.solver.snapshot import save_tensors
    path = tmp_path / "small.yaml"
    path.write_text(TRAIN_TEST)
    params = random_params(small_net())
    save_tensors(tmp_path / "w.safetensors", params, {"format": "trainnet-weights"})
    export_onnx(str(path), tmp_path / "m.onnx", tmp_path / "w.safetensors")
    model = onnx.load(str(tmp_path / "m.onnx"))
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert np.array_equal(stored["fc.0"], params["fc.0"])
    del params["fc.1"]
    save_tensors(tmp_path / "short.safetensors", params, {"format": "trainnet-weights"})
    with pytest.raises(TrainnetError, match="fc.1"):
        export_onnx(str(path), tmp_path / "m2.onnx", tmp_path / "short.safetensors")
    assert not (tmp_path / "m2.onnx").exists()


@pytest.mark.parametrize("layer, type_name", [
    ("{name: py, type: Python, bottom: data, top: out, module: tn_pylayers, layer: Scale, "
     "param_str: '2.5'}", "Python"),
    ("{name: emb, type: Embed, bottom: data, top: out, num_output: 3, input_dim: 4}", "Embed"),
])
def test_layer_without_onnx_form_is_named(layer, type_name, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "pylayers"))
    net = small_net(f"""
name: bad
layer:
  - {{name: data, type: Input, top: data, shape: {{dim: [1, 4]}}}}
  - {layer}
""")
    with pytest.raises(TrainnetError) as e:
        export_model(net, random_params(net))
    message = str(e.value)
    assert message.startswith("<string>:5: layer ")
    assert f"({type_name}): type {type_name} has no exact ONNX form" in message
    assert "\n" not in message


def test_batch_norm_with_batch_statistics_is_refused():
    net = small_net("""
name: bn
layer:
  - {name: data, type: Input, top: data, shape: {dim: [2, 3, 4, 4]}}
  - {name: bn, type: BatchNorm, bottom: data, top: bn, use_global_stats: false}
""")
    with pytest.raises(TrainnetError, match="layer 'bn' \\(BatchNorm\\).*use_global_stats"):
        export_model(net, random_params(net))


def test_preprocess_from_the_weights_file(tmp_path):
    from trainnet.netcfg.common import Preprocess
    from trainnet.solver.snapshot import save_tensors
    from trainnet.zoo.convert import preprocess_metadata
    text = TRAIN_TEST.split("preprocess:")[0]
    (tmp_path / "n.yaml").write_text(text)
    record = Preprocess(channel_order="RGB", raw_scale=1.0, input_scale=0.5)
    save_tensors(tmp_path / "w.safetensors", random_params(small_net(text)),
                 {"format": "trainnet-weights", **preprocess_metadata(record)})
    out = export_onnx(str(tmp_path / "n.yaml"), tmp_path / "m.onnx", tmp_path / "w.safetensors")
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["preprocess"]) == record.model_dump()
    assert not any("no preprocessing" in n for n in out.notes)
    (tmp_path / "n.yaml").write_text(text)
    out = export_onnx(str(tmp_path / "n.yaml"), tmp_path / "m2.onnx")
    assert any("no preprocessing recorded" in n for n in out.notes)


def test_a_top_across_the_batch_has_no_symbolic_batch():
    net = small_net("""
name: across
layer:
  - {name: input, type: Input, top: x, shape: {dim: [2, 3, 4, 4]}}
  - {name: total, type: Reduction, bottom: x, top: total, axis: 0}
  - {name: mean, type: Reduction, bottom: x, top: rows, axis: 1, operation: MEAN}
""")
    model = check_net(net, {})
    shapes = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
              for o in model.graph.output}
    assert shapes == {"total": [], "rows": ["N"]}


def test_weights_from_a_caffemodel(tmp_path):
    from trainnet.formats.caffemodel import trainnet_to_caffe, write_caffemodel
    path = tmp_path / "small.yaml"
    path.write_text(TRAIN_TEST)
    net = small_net()
    params = random_params(net)
    write_caffemodel(tmp_path / "w.caffemodel", net.name, trainnet_to_caffe(params, net))
    export_onnx(str(path), tmp_path / "m.onnx", tmp_path / "w.caffemodel")
    model = onnx.load(str(tmp_path / "m.onnx"))
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert all(np.array_equal(stored[k], v) for k, v in params.items())
