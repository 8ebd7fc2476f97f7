"""ONNX import (issue 15): models built here as ONNX graphs with onnx.helper (seeded random
initializers), imported to a YAML net and safetensors weights, run in trainnet and compared with
ONNX Runtime (CPU) to 1e-4 relative L2; then the refusals, each by its message."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from trainnet import caffe  # noqa: E402
from trainnet.errors import TrainnetError  # noqa: E402
from trainnet.netcfg import load_net  # noqa: E402
from trainnet.solver.snapshot import read_tensors  # noqa: E402
from trainnet.zoo.onnx.importer import import_onnx, onnx_to_trainnet  # noqa: E402

N = helper.make_node


def build(nodes, shape, inits, opset=17, batch=None, metadata=None):
    """A model reading ``x`` of ``shape`` (its batch ``batch`` when symbolic) and giving ``y``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch or shape[0], *shape[1:]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    tensors = [numpy_helper.from_array(np.asarray(v, np.int64 if k.startswith("i_") else
                                                  np.float32), k) for k, v in inits.items()]
    graph = helper.make_graph(nodes, "case", [x], [y], initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model).graph
    y_type = next(v for v in (*inferred.value_info, *inferred.output) if v.name == "y").type
    model.graph.output[0].type.CopyFrom(y_type)
    for key, value in (metadata or {}).items():
        helper.set_model_props(model, {key: value})
    return model


def conv_bn(r, inits, name, x, out, cin, cout, k=3, pad=1, group=1, bias=True):
    """Conv (+ bias) and BatchNormalization: the nodes, their weights added to ``inits``."""
    inits[f"{name}_w"] = r.normal(0, 0.3, (cout, cin // group, k, k))
    ins = [x, f"{name}_w"]
    if bias:
        inits[f"{name}_b"] = r.normal(0, 0.1, cout)
        ins.append(f"{name}_b")
    for s, v in (("g", r.normal(1, 0.1, cout)), ("be", r.normal(0, 0.1, cout)),
                 ("m", r.normal(0, 0.1, cout)), ("v", r.random(cout) + 0.5)):
        inits[f"{name}_{s}"] = v
    return [N("Conv", ins, [f"{name}_c"], name=name, pads=[pad] * 4, group=group),
            N("BatchNormalization", [f"{name}_c", *(f"{name}_{s}" for s in ("g", "be", "m", "v"))],
              [out], name=f"{name}_bn", epsilon=1e-3)]


def resnet(r):
    inits = {"fc_w": r.normal(0, 0.3, (10, 8)), "fc_b": r.normal(0, 0.1, 10)}
    nodes = [*conv_bn(r, inits, "conv1", "x", "c1", 3, 8), N("Relu", ["c1"], ["r1"]),
             N("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
             *conv_bn(r, inits, "res_a", "p1", "a", 8, 8, bias=False), N("Relu", ["a"], ["ra"]),
             *conv_bn(r, inits, "res_b", "ra", "b", 8, 8, bias=False),
             N("Add", ["b", "p1"], ["sum"], name="res_add"), N("Relu", ["sum"], ["rs"]),
             N("GlobalAveragePool", ["rs"], ["gap"]), N("Flatten", ["gap"], ["flat"]),
             N("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], name="fc", transB=1, alpha=0.5, beta=2.0),
             N("Softmax", ["fc"], ["y"], axis=1)]
    return build(nodes, (1, 3, 15, 15), inits, batch="N")


def mobilenet_v2(r):
    inits = {"lo": np.float32(0), "hi": np.float32(6)}
    nodes = [*conv_bn(r, inits, "expand", "x", "e", 8, 16, k=1, pad=0, bias=False),
             N("Clip", ["e", "lo", "hi"], ["e6"], name="expand_relu6"),
             *conv_bn(r, inits, "dw", "e6", "d", 16, 16, group=16, bias=False),
             N("Clip", ["d", "lo", "hi"], ["d6"]),
             *conv_bn(r, inits, "project", "d6", "p", 16, 8, k=1, pad=0, bias=False),
             N("Add", ["p", "x"], ["y"])]
    return build(nodes, (2, 8, 7, 7), inits)


def pool(op, shape=(2, 3, 9, 9), **attrs):
    return lambda r: build([N(op, ["x"], ["y"], **attrs)], shape, {})


def pad_into(op, padding, nonneg=False, **attrs):
    def make(r):
        inits = {"i_pads": padding, "w": r.normal(0, 0.3, (4, 3, 3, 3))}
        first = [N("Relu", ["x"], ["x0"])] if nonneg else []
        src = "x0" if nonneg else "x"
        nodes = [*first, N("Pad", [src, "i_pads"], ["xp"], name="pad")]
        nodes.append(N(op, ["xp", "w"] if op == "Conv" else ["xp"], ["y"], **attrs))
        return build(nodes, (2, 3, 8, 8), inits)
    return make


def classifier(r):
    inits = {"w1": r.normal(0, 0.3, (12, 6)), "b1": r.normal(0, 0.1, 6),
             "w2": r.normal(0, 0.3, (6, 3)), "b2": r.normal(0, 0.1, (1, 3))}
    nodes = [N("MatMul", ["x", "w1"], ["h"], name="ip1"), N("Add", ["h", "b1"], ["hb"]),
             N("Relu", ["hb"], ["hr"]), N("MatMul", ["hr", "w2"], ["o"], name="ip2"),
             N("Add", ["b2", "o"], ["y"])]
    return build(nodes, (2, 4, 12), inits)


def activations(r):
    inits = {"slope": r.random((4, 1, 1)), "one": np.array([0.25])}
    nodes = [N("LeakyRelu", ["x"], ["a"], alpha=0.1), N("PRelu", ["a", "slope"], ["b"]),
             N("Tanh", ["b"], ["c"]), N("PRelu", ["c", "one"], ["d"]),
             N("HardSwish", ["d"], ["e"]), N("Sigmoid", ["e"], ["f"]),
             N("HardSigmoid", ["x"], ["g"], alpha=0.3, beta=0.4),
             N("Concat", ["f", "g", "x"], ["y"], axis=-3)]
    return build(nodes, (2, 4, 5, 5), inits)


def lrn_dropout(r):
    inits = {"ratio": np.float32(0.3)}
    nodes = [N("Relu", ["x"], ["a"]), N("LRN", ["a"], ["b"], size=5, alpha=0.2, beta=0.6, bias=1.5),
             N("Dropout", ["b", "ratio"], ["c"]), N("Identity", ["c"], ["y"])]
    return build(nodes, (2, 7, 4, 4), inits)


def shape_chain(r):
    inits = {"w": r.normal(0, 0.3, (5, 3, 3, 3)), "i_zero": np.array(0), "i_rest": [-1],
             "fc_w": r.normal(0, 0.3, (5 * 4 * 4, 6))}
    nodes = [N("Conv", ["x", "w"], ["c"], name="conv"), N("Shape", ["c"], ["s"]),
             N("Gather", ["s", "i_zero"], ["n"], axis=0),
             N("Unsqueeze", ["n", "i_zero"], ["n1"]),
             N("Concat", ["n1", "i_rest"], ["target"], axis=0),
             N("Reshape", ["c", "target"], ["flat"], name="flatten"),
             N("Gemm", ["flat", "fc_w"], ["y"], name="fc")]
    return build(nodes, (2, 3, 6, 6), inits)


def arithmetic(r):
    inits = {"scale": r.normal(1, 0.2, (1, 3, 1, 1)), "shift": r.normal(0, 0.2, (3, 1, 1)),
             "two": np.float32(2.0), "row": r.normal(0, 0.2, 5)}
    nodes = [N("Mul", ["x", "scale"], ["a"]), N("Sub", ["a", "shift"], ["b"]),
             N("Div", ["b", "two"], ["c"]), N("Add", ["c", "row"], ["d"]),
             N("Sub", ["two", "d"], ["e"]), N("Mul", ["e", "x"], ["f"]),
             N("Sub", ["f", "d"], ["y"])]
    return build(nodes, (2, 3, 4, 5), inits)


def squeeze_excite(r):
    inits = {"w1": r.normal(0, 0.3, (2, 4, 1, 1)), "w2": r.normal(0, 0.3, (4, 2, 1, 1))}
    nodes = [N("GlobalAveragePool", ["x"], ["g"]), N("Conv", ["g", "w1"], ["s"]),
             N("Relu", ["s"], ["sr"]), N("Conv", ["sr", "w2"], ["e"]),
             N("HardSigmoid", ["e"], ["gate"], alpha=1 / 6, beta=0.5),
             N("Mul", ["x", "gate"], ["scaled"], name="excite"), N("Add", ["e", "scaled"], ["y"])]
    return build(nodes, (2, 4, 5, 5), inits)


def deconv(r):
    inits = {"w": r.normal(0, 0.3, (4, 3, 4, 4)), "b": r.normal(0, 0.1, 6)}
    nodes = [N("ConvTranspose", ["x", "w", "b"], ["d"], strides=[2, 2], pads=[1, 1, 2, 2],
               output_padding=[1, 1], group=2),
             N("ConvTranspose", ["d", "w2"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER")]
    inits["w2"] = r.normal(0, 0.3, (6, 2, 4, 4))
    return build(nodes, (2, 4, 5, 5), inits)


def old_opset(r):
    inits = {"w": r.normal(0, 0.3, (6, 3, 3, 3))}
    nodes = [N("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
             N("Clip", ["c"], ["r6"], min=0.0, max=6.0), N("Flatten", ["r6"], ["f"]),
             N("Softmax", ["f"], ["y"])]
    return build(nodes, (2, 3, 7, 7), inits, opset=10)


CASES = {
    "resnet_block": resnet, "mobilenet_v2_block": mobilenet_v2,
    "avgpool_include_pad": pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4,
                                count_include_pad=1),
    "avgpool_exclude_pad": pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
    "avgpool_ceil": pool("AveragePool", shape=(1, 2, 6, 6), kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1] * 4, ceil_mode=1),
    "maxpool_ceil": pool("MaxPool", shape=(1, 2, 8, 8), kernel_shape=[3, 3], strides=[2, 2],
                         ceil_mode=1),
    "avgpool_end_pad": pool("AveragePool", shape=(1, 2, 7, 7), kernel_shape=[2, 2],
                            strides=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1),
    "pad_into_conv": pad_into("Conv", [0, 0, 1, 2, 0, 0, 1, 2], pads=[1, 0, 1, 0]),
    "pad_into_avgpool": pad_into("AveragePool", [0, 0, 1, 1, 0, 0, 1, 1], kernel_shape=[3, 3]),
    "pad_into_maxpool": pad_into("MaxPool", [0, 0, 1, 1, 0, 0, 1, 1], nonneg=True,
                                 kernel_shape=[3, 3], strides=[2, 2]),
    "matmul_add_classifier": classifier, "activations": activations, "lrn_dropout": lrn_dropout,
    "reshape_shape_chain": shape_chain, "arithmetic": arithmetic,
    "squeeze_excite_broadcast": squeeze_excite, "deconv_output_padding": deconv,
    "opset10_same_upper": old_opset,
}


def relative_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def imported(model, tmp_path):
    """Save ``model``, import it with import_onnx; (the trainnet Net, the Converted notes)."""
    src = tmp_path / "model.onnx"
    onnx.save(model, str(src))
    report = import_onnx(src, tmp_path / "net.yaml", tmp_path / "net.safetensors")
    return caffe.Net(str(tmp_path / "net.yaml"), str(tmp_path / "net.safetensors"), caffe.TEST), \
        report


@pytest.mark.parametrize("case", CASES)
def test_imported_model_matches_onnx_runtime(case, tmp_path):
    model = CASES[case](np.random.default_rng(7))
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).normal(0, 1, shape).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})[0]
    net, report = imported(model, tmp_path)
    got = net.forward(x=x)
    assert list(got) == ["y"] or len(got) == 1
    out = next(iter(got.values()))
    assert out.shape == want.shape
    assert relative_l2(out, want) < 1e-4, (case, relative_l2(out, want))
    assert report.kind == "onnx model" and "parameters" in report.notes[0]


def test_import_writes_a_valid_net_and_loadable_weights(tmp_path):
    record = '{"channel_order": "RGB", "raw_scale": 1.0, "mean_value": [0.5, 0.4, 0.3]}'
    model = resnet(np.random.default_rng(3))
    helper.set_model_props(model, {"preprocess": record})
    net, report = imported(model, tmp_path)
    cfg = load_net(tmp_path / "net.yaml")
    assert cfg.preprocess.channel_order == "RGB" and cfg.preprocess.mean_value == [0.5, 0.4, 0.3]
    assert [(l.name, l.type) for l in cfg.layer[:5]] == [
        ("x", "Input"), ("conv1", "Convolution"), ("conv1_bn", "BatchNorm"),
        ("conv1_bn_scale", "Scale"), ("relu", "ReLU")]
    assert cfg.layer[0].params.shape[0].dim == [1, 3, 15, 15]
    weights = read_tensors(tmp_path / "net.safetensors", "weights")
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(weights["conv1.0"], inits["conv1_w"])
    np.testing.assert_array_equal(weights["conv1_bn.2"], [1.0])
    np.testing.assert_allclose(weights["fc.0"], 0.5 * inits["fc_w"], rtol=1e-6)
    np.testing.assert_allclose(weights["fc.1"], 2.0 * inits["fc_b"], rtol=1e-6)
    assert "res_b.1" not in weights  # a Conv without bias has none
    assert report.notes[0].startswith("19 layers (10 with weights), 1,565 parameters")
    assert any("symbolic batch (N)" in n and "Input's first dim" in n for n in report.notes)
    assert np.asarray(net.params["conv1"][0].data).shape == (8, 3, 3, 3)


def refuse_case(nodes, inits=None, shape=(1, 3, 8, 8), opset=17):
    return lambda: build(nodes, shape, inits or {"w": np.ones((4, 3, 3, 3))}, opset=opset)


REFUSED = {
    "unsupported op": (refuse_case([N("Relu", ["x"], ["r"]), N("Erf", ["r"], ["y"]),
                                    N("Transpose", ["y"], ["t"], name="tr")]),
                       "node 1 (Erf), node 'tr' (Transpose): no trainnet layer maps this op"),
    "asymmetric conv pads": (refuse_case([N("Conv", ["x", "w"], ["y"], name="conv",
                                            pads=[0, 0, 1, 1])]),
                             "node 'conv' (Conv): pads begin [0, 0] and end [1, 1]"),
    "same_upper conv": (refuse_case([N("Conv", ["x", "w"], ["y"], name="c", strides=[2, 2],
                                       auto_pad="SAME_UPPER")]),
                        "node 'c' (Conv): pads begin [0, 0] and end [1, 1]"),
    "ceil pooling": (refuse_case([N("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3],
                                    strides=[2, 2], pads=[2, 2, 0, 0], ceil_mode=1)],
                                 shape=(1, 3, 5, 5)),
                     "node 'pool' (MaxPool): pads [2, 2, 0, 0] (top, left, bottom, right) with "
                     "ceil_mode 1 give the output [3, 3]; Caffe's symmetric pad [2, 2] gives "
                     "[4, 4] (FLOOR) or [4, 4] (CEIL)"),
    "pad before relu": (refuse_case([N("Pad", ["x", "i_p"], ["p"], name="pad"),
                                     N("Relu", ["p"], ["y"])], {"i_p": [0, 0, 1, 1] * 2}),
                        "node 'pad' (Pad): a Pad folds only into the one Conv"),
    "pad before maxpool of any sign": (
        refuse_case([N("Pad", ["x", "i_p"], ["p"]), N("MaxPool", ["p"], ["y"], name="mp",
                                                      kernel_shape=[2, 2])],
                    {"i_p": [0, 0, 1, 1] * 2}),
        "node 'mp' (MaxPool): a zero Pad before MaxPool folds only when its input is known >= 0"),
    "opset not convertible": (refuse_case([N("Gelu", ["x"], ["y"])], opset=20),
                              "ONNX model: cannot bring the model from opset 20 to 17: No "
                              "Previous Version of Gelu exists"),
    "gemm transA": (refuse_case([N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "w2"], ["y"],
                                                                name="g", transA=1)],
                                {"w2": np.ones((1, 2))}),
                    "node 'g' (Gemm): transA=1"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_by_name(case, tmp_path):
    make, message = REFUSED[case]
    with pytest.raises(TrainnetError) as info:
        onnx_to_trainnet(make())
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_corrupt_or_missing_file_is_one_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0a\xff\xff\xff\xff not a model")
    with pytest.raises(TrainnetError, match=r"bad.onnx: not a readable ONNX model"):
        import_onnx(bad, tmp_path / "n.yaml", tmp_path / "w.safetensors")
    with pytest.raises(TrainnetError, match=r"gone.onnx: no such file"):
        import_onnx(tmp_path / "gone.onnx", tmp_path / "n.yaml", tmp_path / "w.safetensors")
    assert not (tmp_path / "n.yaml").exists() and not (tmp_path / "w.safetensors").exists()
