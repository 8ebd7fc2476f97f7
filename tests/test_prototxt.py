"""Caffe prototxt: reading (current, V1 and net-input forms), writing, round trips and errors."""

from pathlib import Path

import pytest
import yaml

from test_netcfg import EVERY_TYPE, without_location
from trainnet.errors import ConfigError
from trainnet.netcfg import dump_net, load_net, load_net_text, load_solver, load_solver_text
from trainnet.netcfg.common import TransformationParameter
from trainnet.netcfg.prototxt import read_net
from trainnet.netcfg.text_format import parse_text
from trainnet.netcfg.to_prototxt import dump_net_prototxt, dump_solver_prototxt
from trainnet.plan import compile_net

SHARED_LENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "caffe" / "lenet"
ROOT = Path(__file__).resolve().parents[1]


def net_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_net_text(text, "n.prototxt")
    return str(info.value)


def test_text_format_tokens():
    fields = parse_text('a: 1 b: -2.5e-3 c: "x\\"y" "z" d: MAX e: true\n'
                        "f { g: [1, 2] } h < i: 'q' >; k: inf # comment\n", "t")
    got = [(f.key, f.value if not f.message else [(g.key, g.value) for g in f.value], f.line)
           for f in fields]
    assert got == [("a", 1, 1), ("b", -2.5e-3, 1), ("c", 'x"yz', 1), ("d", "MAX", 1), ("e", True, 1),
                   ("f", [("g", 1), ("g", 2)], 2), ("h", [("i", "q")], 2), ("k", float("inf"), 2)]


def test_caffe_lenet_deploy_prototxt_compiles():
    path = SHARED_LENET / "lenet.prototxt"
    if not path.is_file():
        pytest.skip("../shared/data/caffe/lenet/lenet.prototxt not found")
    cfg = load_net(path)
    assert [l.name for l in cfg.layer] == ["data", "conv1", "pool1", "conv2", "pool2", "ip1",
                                           "relu1", "ip2", "prob"]
    conv1 = cfg.layer[1]
    assert conv1.params.num_output == 20 and conv1.params.weight_filler.type == "xavier"
    assert [p.lr_mult for p in conv1.param] == [1, 2]
    plan = compile_net(cfg, "TEST")
    assert plan.blobs["prob"].shape == (64, 10)


V1 = """\
name: "V1Net"
input: "data"
input_dim: 2
input_dim: 3
input_dim: 8
input_dim: 8
layers {
  name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  param: "shared_w"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.01 } }
}
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
         pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool1" top: "ip"
         inner_product_param { num_output: 5 } }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
"""


def test_v1_layers_and_net_inputs_are_upgraded():
    cfg = load_net_text(V1, "v1.prototxt")
    assert [(l.name, l.type) for l in cfg.layer] == [
        ("input", "Input"), ("conv1", "Convolution"), ("relu1", "ReLU"), ("pool1", "Pooling"),
        ("ip", "InnerProduct"), ("prob", "Softmax")]
    assert cfg.layer[0].params.shape[0].dim == [2, 3, 8, 8] and cfg.layer[0].top == ["data"]
    conv = cfg.layer[1]
    assert [(p.name, p.lr_mult, p.decay_mult) for p in conv.param] == [("shared_w", 1, 1), ("", 2, 0)]
    assert cfg.layer[3].params.pool == "AVE"
    assert compile_net(cfg, "TEST").blobs["prob"].shape == (2, 5)


V1_DATA = """\
layers {
  name: "mnist" type: DATA top: "data" top: "label"
  data_param {
    source: "mnist/train-images-idx3-ubyte.gz" batch_size: 64
    scale: 0.00390625 mirror: true crop_size: 24 mean_file: "mean.binaryproto"
  }
  include: { phase: TRAIN }
}
"""


def test_deprecated_transformation_fields_move_to_transform_param():
    """Caffe's UpgradeNetDataTransformation, which upgrades V1 layers only."""
    cfg = load_net_text(V1_DATA, "d.prototxt")
    data = cfg.layer[0]
    assert data.transform_param == TransformationParameter(scale=0.00390625, mirror=True, crop_size=24,
                                                           mean_file="mean.binaryproto")
    assert (data.params.source, data.params.batch_size) == ("mnist/train-images-idx3-ubyte.gz", 64)
    assert "scale" not in dump_net_prototxt(cfg).split("data_param")[1]


def test_deprecated_fields_in_a_current_layer_are_refused():
    """Caffe ignores them there (its data layers read transform_param alone): refused, not
    silently dropped or silently applied."""
    current = ('layer { name: "d" type: "Data" top: "data"\n'
               '  transform_param { mean_value: 33 }\n'
               '  data_param { source: "s" batch_size: 2 scale: 0.5 } }\n')
    assert net_error(current) == (
        "n.prototxt:3: layer 'd' (Data): data_param.scale: deprecated, and Caffe ignores it in a "
        "current-format layer (it upgrades only V1 'layers'): give it in transform_param")


@pytest.mark.parametrize("v1_type, message", [("IMAGE_DATA", "image_data_param"),
                                              ("WINDOW_DATA", "window_data_param")])
def test_image_and_window_data_fields_move_before_any_params_model_reads_them(v1_type, message):
    text = (f'layers {{ name: "d" type: {v1_type} top: "data"\n'
            f'  {message} {{ source: "list.txt" crop_size: 227\n mirror: true }} }}\n')
    data, src = read_net(text, "i.prototxt")
    layer = data["layer"][0]
    assert layer["transform_param"] == {"crop_size": 227, "mirror": True}
    assert src.lines[("layer", 0, "transform_param", "mirror")] == 3
    held = layer.get(message, layer)  # flattened when the type is registered
    assert held["source"] == "list.txt" and "crop_size" not in held and "mirror" not in held


def test_moved_field_keeps_its_line_and_a_field_in_both_places_is_an_error():
    bad_value = 'layers { name: "d" type: DATA top: "x"\n data_param { source: "s" batch_size: 2\n crop_size: -1 } }\n'
    assert net_error(bad_value) == "n.prototxt:3: layer 'd' (Data): transform_param.crop_size: must be >= 0, got -1"
    both = ('layers { name: "d" type: DATA top: "x"\n  transform_param { scale: 2 }\n'
            '  data_param { source: "s" batch_size: 2\n    scale: 0.5 } }\n')
    assert net_error(both) == (
        "n.prototxt:4: layer 'd' (Data): data_param.scale: also given in transform_param (line 2); "
        "the deprecated data_param field moves there (as Caffe upgrades it): give it once, in "
        "transform_param")


def test_input_shape_form():
    text = 'input: "x" input_shape { dim: 1 dim: 3 } input: "y" input_shape { dim: 1 }\n' \
           'layer { name: "f" type: "Flatten" bottom: "x" top: "f" }\n'
    cfg = load_net_text(text, "i.prototxt")
    assert cfg.layer[0].top == ["x", "y"]
    assert [s.dim for s in cfg.layer[0].params.shape] == [[1, 3], [1]]


def test_lenet_yaml_to_prototxt_and_back():
    cfg = load_net(ROOT / "configs" / "lenet" / "lenet_train_test.yaml")
    text = dump_net_prototxt(cfg)
    assert "convolution_param {" in text and 'type: "xavier"' in text and "phase: TRAIN" in text
    again = load_net_text(text, "lenet.prototxt")
    assert without_location(again) == without_location(cfg)
    assert dump_net_prototxt(again) == text


def test_every_layer_type_round_trips_through_prototxt():
    """YAML -> prototxt -> YAML keeps every field of every layer type (prototxt is Caffe's form:
    the flattened parameters go back into each type's own messages)."""
    cfg = load_net_text(EVERY_TYPE, "every.yaml")
    text = dump_net_prototxt(cfg)
    again = load_net_text(text, "every.prototxt")
    for before, after in zip(cfg.layer, again.layer):
        assert after.model_copy(update={"line": None}) == before.model_copy(update={"line": None}), \
            before.name
    assert without_location(again) == without_location(cfg)
    assert dump_net(load_net_text(yaml.safe_dump(dump_net(again)), "y.yaml")) == dump_net(cfg)
    assert dump_net_prototxt(again) == text


def test_parameters_of_two_messages_go_back_to_their_own():
    text = ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "a" bottom: "b" top: "l"\n'
            '  softmax_param { axis: 2 }\n  loss_param { ignore_label: 3 normalization: FULL } }\n')
    cfg = load_net_text(text, "l.prototxt")
    assert (cfg.layer[0].params.axis, cfg.layer[0].params.ignore_label) == (2, 3)
    out = dump_net_prototxt(cfg)
    assert "softmax_param {\n    axis: 2\n  }" in out
    assert "loss_param {\n    ignore_label: 3\n    normalization: FULL\n  }" in out


# --- errors name the file and the line ------------------------------------------------------------

def test_value_error_inside_a_param_message_names_its_line():
    text = ('layer {\n  name: "c" type: "Convolution" bottom: "x" top: "c"\n'
            '  convolution_param {\n    num_output: 4\n    kernel_size: 0\n  }\n}\n')
    assert net_error(text) == "n.prototxt:5: layer 'c' (Convolution): kernel_size: must be >= 1, got 0"


def test_unknown_field_in_a_param_message_gets_a_hint():
    text = ('layer { name: "c" type: "Convolution"\n'
            '  convolution_param { num_output: 4\n kernel_sise: 3 } }\n')
    assert net_error(text) == ("n.prototxt:3: layer 'c' (Convolution): kernel_sise: unknown key "
                               "(did you mean 'kernel_size'?)")


def test_message_of_another_type_is_refused_by_name():
    text = 'layer { name: "p" type: "Pooling"\n  convolution_param { num_output: 4 } }\n'
    msg = net_error(text)
    assert msg.startswith("n.prototxt:2: layer 'p' (Pooling): convolution_param: belongs to ")
    assert "Convolution" in msg and "its parameters go in pooling_param" in msg


def test_field_of_the_other_message_is_refused():
    text = 'layer { name: "l" type: "SoftmaxWithLoss"\n softmax_param { ignore_label: 1 } }\n'
    assert net_error(text) == ("n.prototxt:2: layer 'l' (SoftmaxWithLoss): softmax_param.ignore_label: "
                               "unknown key; softmax_param holds axis for this type")


def test_unimplemented_layer_type_is_refused_by_name():
    text = 'name: "x"\nlayer { name: "d" type: "Im2col" top: "d" convolution_param { kernel_size: 3 } }\n'
    msg = net_error(text)
    assert msg.startswith("n.prototxt:2: layer 'd': type: unknown layer type 'Im2col'")
    v1 = 'layers { name: "w" type: WINDOW_DATA top: "d" }\n'
    assert "unknown layer type 'WindowData'" in net_error(v1)
    assert net_error('layers { name: "z" type: BOGUS }\n').startswith(
        "n.prototxt:1: layer 'z': type: unknown V1 layer type 'BOGUS'")


@pytest.mark.parametrize("text, message", [
    ('layer { name: "a" \n type: "ReLU"', "n.prototxt:2: prototxt syntax error: expected a field name, "
                                          "found the end of the file"),
    ('layer {\n name: "a" type: \n}', "n.prototxt:3: prototxt syntax error: expected a value for 'type'"),
    ('layer {\n name: "a" ?\n}', "n.prototxt:2: prototxt syntax error: unexpected '?'"),
    ('layer {\n name: "unterminated\n}', "n.prototxt:2: prototxt syntax error: unexpected '\"'"),
    ('input: "x"\ninput_dim: 1\n', "n.prototxt:2: 1 inputs need 4 input_dim values, got 1"),
    ('layers { name: "a" type: RELU }\nlayer { name: "b" type: "ReLU" }\n',
     "n.prototxt:1: mixes V1 'layers' and current 'layer' entries"),
])
def test_syntax_and_structure_errors(text, message):
    assert net_error(text) == message


def test_missing_prototxt_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.prototxt: no such config file"):
        load_net(tmp_path / "nope.prototxt")


# --- solvers ----------------------------------------------------------------------------------------

SOLVER = """\
# Caffe's lenet_solver.prototxt, with the legacy solver_type enum
net: "net.prototxt"
test_iter: 2
test_interval: 4
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 2
max_iter: 8
snapshot: 0
snapshot_prefix: "out/lenet"
solver_mode: CPU
solver_type: NESTEROV
random_seed: 1
"""


def test_solver_prototxt_with_legacy_solver_type():
    cfg = load_solver_text(SOLVER, "s.prototxt")
    assert (cfg.type, cfg.lr_policy, cfg.test_iter, cfg.solver_mode) == ("Nesterov", "inv", [2], "CPU")
    again = load_solver_text(dump_solver_prototxt(cfg), "s2.prototxt")
    assert again.model_copy(update={"file": None}) == cfg.model_copy(update={"file": None})


def test_solver_prototxt_errors_name_the_line():
    with pytest.raises(ConfigError, match=r"^s.prototxt:3: base_lr: must be >= 0.0, got -1$"):
        load_solver_text('net: "n.prototxt"\n\nbase_lr: -1\n', "s.prototxt")
    with pytest.raises(ConfigError, match=r"^s.prototxt:2: give type or the legacy solver_type"):
        load_solver_text('type: "SGD"\nsolver_type: SGD\nnet: "n"\n', "s.prototxt")


def test_train_from_prototxt_files(tmp_path, mnist_dir, monkeypatch):
    """`trainnet train solver.prototxt` with a prototxt net, as with YAML."""
    from click.testing import CliRunner

    from trainnet.cli import main

    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    monkeypatch.chdir(tmp_path)
    net = load_net(ROOT / "configs" / "lenet" / "lenet_train_test.yaml")
    (tmp_path / "net.prototxt").write_text(dump_net_prototxt(net))
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    result = CliRunner().invoke(main, ["train", "solver.prototxt", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Iteration 8" in result.output and "accuracy" in result.output
    # a prototxt solver snapshots in Caffe's default format, BINARYPROTO
    assert {p.name for p in (tmp_path / "out").glob("lenet_iter_8.*")} == {
        "lenet_iter_8.caffemodel", "lenet_iter_8.solverstate"}
    assert load_solver(tmp_path / "solver.prototxt").net_path == tmp_path / "net.prototxt"
