"""ONNX export of each layer type with an ONNX form and its parameter variants: a table of small
nets (an Input, then the layer), each exported at random weights and run in ONNX Runtime at
batch 1 and 2 against trainnet's forward, within 1e-4 relative."""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_onnx_export import check_net, random_params, small_net  # noqa: E402

X = {"x": (2, 3, 9, 9)}
XY = {"x": (2, 3, 9, 9), "y": (2, 3, 9, 9)}
X10 = {"x": (2, 3, 10, 10)}
X4 = {"x": (2, 3, 4, 4)}

# (id, inputs by name and shape, the layers after the Input (bottom x, top out), ONNX ops the
# graph must hold)
CASES = [
    ("conv_groups_dilation", X, "{type: Convolution, num_output: 6, kernel_size: 3, dilation: 2, "
     "group: 3, pad: 1, stride: 2}", ["Conv"]),
    ("conv_depthwise_nobias", X, "{type: Convolution, num_output: 3, kernel_size: 3, group: 3, "
     "pad: 1, bias_term: false}", ["Conv"]),
    ("conv_rect", X, "{type: Convolution, num_output: 4, kernel_h: 3, kernel_w: 1, pad_h: 1, pad_w: 0, "
     "stride_h: 1, stride_w: 2}", ["Conv"]),
    ("deconv_groups_stride", X, "{type: Deconvolution, num_output: 6, kernel_size: 3, group: 3, "
     "stride: 2, pad: 1}", ["ConvTranspose"]),
    ("deconv_dilation", X, "{type: Deconvolution, num_output: 2, kernel_size: 2, dilation: 2, "
     "stride: 3}", ["ConvTranspose"]),
    ("ip", X, "{type: InnerProduct, num_output: 5}", ["Gemm"]),
    ("ip_transpose", X, "{type: InnerProduct, num_output: 4, transpose: true}", ["Gemm"]),
    ("ip_axis2", X, "{type: InnerProduct, num_output: 5, axis: 2}", ["MatMul"]),
    ("ip_axis_neg1_transpose", X, "{type: InnerProduct, num_output: 4, axis: -1, transpose: true, "
     "bias_term: false}", ["MatMul"]),
    ("max_ceil_overhang", X10, "{type: Pooling, pool: MAX, kernel_size: 3, stride: 2}", ["MaxPool"]),
    ("max_ceil_dropped", X4, "{type: Pooling, pool: MAX, kernel_size: 2, stride: 3, pad: 1}",
     ["MaxPool"]),
    ("max_floor", X10, "{type: Pooling, pool: MAX, kernel_size: 3, stride: 2, round_mode: FLOOR}",
     ["MaxPool"]),
    ("ave_pad", X10, "{type: Pooling, pool: AVE, kernel_size: 3, stride: 2, pad: 1}",
     ["Pad", "AveragePool"]),
    ("ave_ceil_dropped", X4, "{type: Pooling, pool: AVE, kernel_size: 2, stride: 3, pad: 1}",
     ["AveragePool"]),
    ("ave_rect_floor", X10, "{type: Pooling, pool: AVE, kernel_h: 3, kernel_w: 2, stride_h: 2, "
     "stride_w: 1, pad_h: 0, pad_w: 1, round_mode: FLOOR}", ["AveragePool"]),
    ("global_ave", X, "{type: Pooling, pool: AVE, global_pooling: true}", ["GlobalAveragePool"]),
    ("global_max", X, "{type: Pooling, pool: MAX, global_pooling: true}", ["GlobalMaxPool"]),
    ("relu", X, "{type: ReLU}", ["Relu"]),
    ("relu_leaky", X, "{type: ReLU, negative_slope: 0.1}", ["LeakyRelu"]),
    ("prelu", X, "{type: PReLU, filler: {type: uniform, min: 0.1, max: 0.5}}", ["PRelu"]),
    ("prelu_shared", X, "{type: PReLU, channel_shared: true}", ["PRelu"]),
    ("elu", X, "{type: ELU, alpha: 0.5}", ["Elu"]),
    ("sigmoid", X, "{type: Sigmoid}", ["Sigmoid"]),
    ("tanh", X, "{type: TanH}", ["Tanh"]),
    ("absval", X, "{type: AbsVal}", ["Abs"]),
    ("power", X, "{type: Power, power: 2, scale: 0.5, shift: 2}", ["Pow"]),
    ("power_sqrt", X, "{type: Power, power: 0.5, scale: 0.25, shift: 3}", ["Pow"]),
    ("power_affine", X, "{type: Power, scale: -2, shift: 1}", ["Mul", "Add"]),
    ("power_constant", X, "{type: Power, power: 3, scale: 0, shift: 2}", ["ConstantOfShape"]),
    ("exp", X, "{type: Exp}", ["Exp"]),
    ("exp_base", X, "{type: Exp, base: 2, scale: 0.5, shift: 1}", ["Exp"]),
    ("log", X, "{type: Log, base: 10, scale: 0.5, shift: 5}", ["Log"]),
    ("bnll", X, "{type: BNLL}", ["Softplus"]),
    ("clip", X, "{type: Clip, min: -0.5, max: 0.7}", ["Clip"]),
    ("swish", X, "{type: Swish, beta: 1.5}", ["Sigmoid"]),
    ("threshold", X, "{type: Threshold, threshold: 0.2}", ["Greater", "Cast"]),
    ("dropout", X, "{type: Dropout, dropout_ratio: 0.3}", ["Identity"]),
    ("batch_norm", X, "{type: BatchNorm, eps: 0.001}", ["BatchNormalization"]),
    ("scale_axis_num_axes", X, "{type: Scale, axis: 1, num_axes: 2, bias_term: true, "
     "filler: {type: gaussian}, bias_filler: {type: gaussian}}", ["Mul", "Add"]),
    ("scale_last_axis", X, "{type: Scale, axis: -1}", ["Mul"]),
    ("bias", X, "{type: Bias, axis: 2, num_axes: 2, filler: {type: gaussian}}", ["Add"]),
    ("lrn_across", X, "{type: LRN, local_size: 3, alpha: 0.5, beta: 0.75, k: 2}", ["LRN"]),
    ("lrn_within", X, "{type: LRN, local_size: 3, alpha: 0.5, beta: 0.6, "
     "norm_region: WITHIN_CHANNEL}", ["AveragePool", "Pow"]),
    ("mvn", X, "{type: MVN}", ["ReduceMean"]),
    ("mvn_mean_only", X, "{type: MVN, normalize_variance: false}", ["ReduceMean"]),
    ("mvn_across", X, "{type: MVN, across_channels: true, eps: 0.001}", ["ReduceMean"]),
    ("eltwise_sum_coeff", XY, "{type: Eltwise, bottom: [x, y], coeff: [1, -0.5]}", ["Add"]),
    ("eltwise_prod", XY, "{type: Eltwise, bottom: [x, y, x], operation: PROD}", ["Mul"]),
    ("eltwise_max", XY, "{type: Eltwise, bottom: [x, y, x], operation: MAX}", ["Max"]),
    ("concat", XY, "{type: Concat, bottom: [x, y], axis: 2}", ["Concat"]),
    ("concat_dim", XY, "{type: Concat, bottom: [x, y], concat_dim: 1}", ["Concat"]),
    ("slice_points", X, "{type: Slice, top: [out, b, c], axis: 3, slice_point: [2, 7]}", ["Split"]),
    ("slice_even", X, "{type: Slice, top: [out, b, c], slice_dim: 1}", ["Split"]),
    ("split", X, "{type: Split, top: [out, b]}", ["Identity"]),
    ("flatten", X, "{type: Flatten}", ["Reshape"]),
    ("flatten_end", X, "{type: Flatten, axis: 2, end_axis: 3}", ["Reshape"]),
    ("reshape_copy_infer", X, "{type: Reshape, shape: {dim: [0, -1, 3]}}", ["Reshape"]),
    ("reshape_axis", X, "{type: Reshape, shape: {dim: [3, 1]}, axis: 1, num_axes: 1}",
     ["Reshape"]),
    ("reshape_insert", X, "{type: Reshape, shape: {dim: [1, -1]}, axis: -2, num_axes: 1}",
     ["Reshape"]),
    ("crop", {"x": (2, 3, 9, 9), "y": (2, 3, 5, 6)}, "{type: Crop, bottom: [x, y], offset: [1, 2]}",
     ["Slice"]),
    ("crop_axis1", {"x": (2, 3, 9, 9), "y": (2, 2, 4, 4)}, "{type: Crop, bottom: [x, y], axis: 1, "
     "offset: 1}", ["Slice"]),
    ("tile", X, "{type: Tile, axis: 1, tiles: 2}", ["Tile"]),
    ("tile_last", X, "{type: Tile, axis: -1, tiles: 3}", ["Tile"]),
    ("softmax", X, "{type: Softmax}", ["Softmax"]),
    ("softmax_axis3", X, "{type: Softmax, axis: 3}", ["Softmax"]),
    ("argmax_items", X, "{type: ArgMax, top_k: 3, out_max_val: true}", ["TopK"]),
    ("argmax_index", X, "{type: ArgMax}", ["TopK"]),
    ("argmax_axis", X, "{type: ArgMax, axis: 1, top_k: 2}", ["TopK"]),
    ("argmax_axis_value", X, "{type: ArgMax, axis: 3, top_k: 2, out_max_val: true}", ["TopK"]),
    ("reduce_sum", X, "{type: Reduction, axis: 1}", ["ReduceSum"]),
    ("reduce_asum", X, "{type: Reduction, operation: ASUM, axis: 2, coeff: -0.5}", ["Abs"]),
    ("reduce_sumsq", X, "{type: Reduction, operation: SUMSQ, axis: -1}", ["ReduceSum"]),
    ("reduce_mean", X, "{type: Reduction, operation: MEAN, axis: 1, coeff: 2}", ["ReduceMean"]),
]


def case_net(inputs: dict, layer: str):
    tops = ", ".join(inputs)
    shapes = ", ".join(f"{{dim: {list(s)}}}" for s in inputs.values())
    body = layer.strip()[1:-1]
    if "bottom:" not in body:
        body = "bottom: x, " + body
    if "top:" not in body:
        body += ", top: out"
    return small_net(f"""
name: case
layer:
  - {{name: input, type: Input, top: [{tops}], shape: [{shapes}]}}
  - {{name: layer, {body}}}
""")


@pytest.mark.parametrize("inputs, layer, ops", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_layer_matches_trainnet(inputs, layer, ops):
    net = case_net(inputs, layer)
    model = check_net(net, random_params(net))
    used = {n.op_type for n in model.graph.node}
    assert set(ops) <= used, used


def test_batch_norm_folds_the_scale_after_it():
    net = small_net("""
name: bn_scale
layer:
  - {name: input, type: Input, top: x, shape: {dim: [2, 3, 9, 9]}}
  - {name: bn, type: BatchNorm, bottom: x, top: x}
  - {name: scale, type: Scale, bottom: x, top: x, bias_term: true}
  - {name: bn2, type: BatchNorm, bottom: x, top: y}
  - {name: scale2, type: Scale, bottom: y, top: z, filler: {type: gaussian}}
""")
    model = check_net(net, random_params(net))
    assert [n.op_type for n in model.graph.node] == ["BatchNormalization"] * 2
    assert [o.name for o in model.graph.output] == ["z"]
    assert {"scale.0", "scale.1", "scale2.0"} <= {i.name for i in model.graph.initializer}


def test_silenced_blobs_are_no_outputs():
    net = small_net("""
name: silence
layer:
  - {name: input, type: Input, top: x, shape: {dim: [2, 3, 4, 4]}}
  - {name: split, type: Slice, bottom: x, top: [a, b], slice_point: [1]}
  - {name: quiet, type: Silence, bottom: b}
""")
    model = check_net(net, {})
    assert [o.name for o in model.graph.output] == ["a"]


def test_scale_by_a_second_bottom():
    net = small_net("""
name: scale2
layer:
  - {name: input, type: Input, top: [x, s], shape: [{dim: [2, 3, 9, 9]}, {dim: [2, 3]}]}
  - {name: scale, type: Scale, bottom: [x, s], top: out, axis: 0}
  - {name: bias, type: Bias, bottom: [out, s], top: out2, axis: 0}
""")
    check_net(net, {})


def test_argmax_ties_go_to_the_largest_index():
    import numpy as np
    from test_onnx_export import onnx_forward, session, trainnet_forward
    from trainnet.zoo.onnx.export import export_model
    net = case_net({"x": (1, 6)}, "{type: ArgMax, top_k: 2, out_max_val: true}")
    x = {"x": np.array([[1, 3, 0, 3, 2, 3]], np.float32)}
    got = onnx_forward(session(export_model(net, {})), x)["out"]
    assert np.array_equal(got, trainnet_forward(net, {}, x, ["out"])["out"])
    assert got.reshape(-1).tolist() == [5, 3, 3, 3]
