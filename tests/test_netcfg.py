"""Config loading: the shipped configs, located error messages, and dump/load round trips."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainnet.errors import ConfigError
from trainnet.layers import known_types
from trainnet.netcfg import (NetConfig, dump_net, load_net, load_net_text, load_solver,
                             load_solver_text)
from trainnet.plan import compile_net

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "configs" / "lenet"


def net_error(text: str, file: str = "x.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        load_net_text(text, file)
    return str(info.value)


def solver_error(text: str, file: str = "s.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        load_solver_text(text, file)
    return str(info.value)


def without_location(cfg: NetConfig) -> NetConfig:
    """``cfg`` with its source file and layer lines dropped: they say where, not what."""
    return cfg.model_copy(update={"file": None,
                                  "layer": [l.model_copy(update={"line": None}) for l in cfg.layer]})


# --- the shipped LeNet configs ---------------------------------------------------------------

def test_lenet_net_loads():
    cfg = load_net(LENET / "lenet_train_test.yaml")
    assert cfg.name == "LeNet"
    assert [l.name for l in cfg.layer] == ["mnist", "mnist", "conv1", "pool1", "conv2", "pool2",
                                          "ip1", "relu1", "ip2", "accuracy", "loss"]
    conv1 = cfg.layer[2]
    assert conv1.type == "Convolution" and conv1.bottom == ["data"] and conv1.top == ["conv1"]
    assert conv1.params.num_output == 20 and conv1.params.kernel_size == [5]
    assert conv1.params.weight_filler.type == "xavier"
    assert [p.lr_mult for p in conv1.param] == [1.0, 2.0]
    assert cfg.layer[0].include[0].phase == "TRAIN" and cfg.layer[1].include[0].phase == "TEST"
    assert cfg.layer[0].transform_param.scale == 0.00390625
    assert cfg.layer[7].top == cfg.layer[7].bottom == ["ip1"]       # relu1 in place
    lines = (LENET / "lenet_train_test.yaml").read_text().splitlines()
    assert cfg.layer[2].line == lines.index("  - name: conv1") + 1
    assert cfg.layer[-1].line == lines.index("  - name: loss") + 1
    assert Path(cfg.file).resolve() == (LENET / "lenet_train_test.yaml").resolve()


def test_lenet_solver_loads_and_resolves_net_beside_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the net path must not depend on the working directory
    solver = load_solver(LENET / "lenet_solver.yaml")
    assert solver.net == "lenet_train_test.yaml"
    assert solver.net_path.resolve() == (LENET / "lenet_train_test.yaml").resolve()
    assert solver.net_path.is_file()
    assert (solver.lr_policy, solver.base_lr, solver.momentum) == ("inv", 0.01, 0.9)
    assert (solver.gamma, solver.power, solver.weight_decay) == (0.0001, 0.75, 0.0005)
    assert solver.test_iter == [100] and solver.test_interval == 500
    assert solver.max_iter == 10000 and solver.snapshot_prefix == "runs/lenet/lenet"


def test_solver_net_path_relative_to_solver_file(tmp_path, monkeypatch):
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "solver.yaml").write_text("net: ../nets/net.yaml\n")
    monkeypatch.chdir(tmp_path)
    solver = load_solver(Path("a/b/solver.yaml"))
    assert solver.net_path.resolve() == (tmp_path / "a" / "nets" / "net.yaml").resolve()
    absolute = tmp_path / "elsewhere.yaml"
    (sub / "abs.yaml").write_text(f"net: {absolute}\n")
    assert load_solver(sub / "abs.yaml").net_path == absolute


# --- located errors: file:line: layer 'name' (Type): field: message --------------------------

CONV_NET = """\
name: t
layer:
  - name: data
    type: Input
    top: data
    shape: {dim: [2, 1, 8, 8]}
  - name: conv1
    type: Convolution
    bottom: data
    top: conv1
    num_output: 4
    kernel_size: 3
  - name: conv2
    type: Convolution
    bottom: conv1
    top: conv2
    num_output: 4
    KERNEL
"""


def conv2_with(fields: str) -> str:
    """CONV_NET with ``fields`` (YAML lines, layer-indented) on conv2 from line 18 on."""
    return CONV_NET.replace("    KERNEL\n", fields)


def test_out_of_range_scalar_for_repeated_field_names_the_field_plainly():
    # kernel_size is a repeated field given one value: no list index in the field name
    assert net_error(conv2_with("    kernel_size: -1\n")) == \
        "x.yaml:18: layer 'conv2' (Convolution): kernel_size: must be >= 1, got -1"


def test_bad_element_of_a_list_names_its_index():
    assert net_error(conv2_with("    kernel_size: [3, -2]\n")) == \
        "x.yaml:18: layer 'conv2' (Convolution): kernel_size[1]: must be >= 1, got -2"
    text = conv2_with("    kernel_size: 3\n    pad:\n      - 1\n      - x\n")
    assert net_error(text) == \
        "x.yaml:21: layer 'conv2' (Convolution): pad[1]: expects an integer, got str 'x'"


def test_zero_kernel_is_an_error_naming_file_line_layer_and_field():
    with pytest.raises(ConfigError) as info:
        load_net_text(conv2_with("    kernel_size: 0\n"), "x.yaml")
    assert str(info.value) == "x.yaml:18: layer 'conv2' (Convolution): kernel_size: must be >= 1, got 0"
    assert (info.value.file, info.value.line, info.value.layer) == ("x.yaml", 18, "conv2")


def test_missing_kernel_is_an_error_at_compile_time_naming_file_line_and_layer():
    cfg = load_net_text(conv2_with(""), "x.yaml")
    with pytest.raises(ConfigError) as info:
        compile_net(cfg, "TEST")
    assert str(info.value) == ("x.yaml:13: layer 'conv2' (Convolution): "
                               "kernel_size (or kernel_h and kernel_w) is required and must be > 0")
    assert (info.value.file, info.value.line, info.value.layer) == ("x.yaml", 13, "conv2")


def test_unknown_key_with_hint():
    assert net_error(conv2_with("    kernel_sise: 3\n")) == \
        "x.yaml:18: layer 'conv2' (Convolution): kernel_sise: unknown key (did you mean 'kernel_size'?)"


def test_unknown_key_without_close_match_lists_known_keys():
    msg = net_error(conv2_with("    kernel_size: 3\n    zzzqqq: 1\n"))
    assert msg.startswith("x.yaml:19: layer 'conv2' (Convolution): zzzqqq: unknown key; known keys: ")
    known = msg.split("known keys: ")[1].split(", ")
    assert {"kernel_size", "num_output", "bottom", "top", "param", "weight_filler"} <= set(known)


def test_unknown_key_in_nested_model():
    text = conv2_with("    kernel_size: 3\n    weight_filler: {typ: xavier}\n")
    assert net_error(text) == \
        "x.yaml:19: layer 'conv2' (Convolution): weight_filler.typ: unknown key (did you mean 'type'?)"
    text = conv2_with("    kernel_size: 3\n    param:\n      - {lr_mult: 1}\n      - {lr_mul: 2}\n")
    assert net_error(text) == \
        "x.yaml:21: layer 'conv2' (Convolution): param[1].lr_mul: unknown key (did you mean 'lr_mult'?)"
    text = conv2_with("    kernel_size: 3\n    transform_param: {scal: 2}\n")
    assert net_error(text) == \
        "x.yaml:19: layer 'conv2' (Convolution): transform_param.scal: unknown key (did you mean 'scale'?)"
    assert net_error("name: n\nstate:\n  phas: TEST\nlayer: []\n") == \
        "x.yaml:3: state.phas: unknown key (did you mean 'phase'?)"
    # no close match in a nested model: its own keys are listed, not the layer's
    msg = net_error(conv2_with("    kernel_size: 3\n    bias_filler: {zzzqqq: 1}\n"))
    assert msg.startswith("x.yaml:19: layer 'conv2' (Convolution): bias_filler.zzzqqq: unknown key; "
                          "known keys: max, mean, min, sparse, std, type, value, variance_norm")


def test_wrong_type():
    def conv2_num_output(value: str) -> str:
        return CONV_NET.replace("    num_output: 4\n    KERNEL\n",
                                f"    num_output: {value}\n    kernel_size: 3\n")

    assert net_error(conv2_num_output('"20"')) == \
        "x.yaml:17: layer 'conv2' (Convolution): num_output: expects an integer, got str '20'"
    assert net_error(conv2_num_output("2.5")) == \
        "x.yaml:17: layer 'conv2' (Convolution): num_output: expects an integer, got float 2.5"
    assert net_error(conv2_with("    kernel_size: 3\n    bias_term: yes please\n")) == \
        "x.yaml:19: layer 'conv2' (Convolution): bias_term: expects true or false, got str 'yes please'"


def test_several_errors_report_the_topmost_and_count_the_rest():
    text = conv2_with("    kernel_size: -1\n    stride: x\n    group: 0\n")
    assert net_error(text) == \
        "x.yaml:18: layer 'conv2' (Convolution): kernel_size: must be >= 1, got -1 (and 2 more)"


def test_missing_required_field():
    text = "layer:\n  - name: ip\n    type: InnerProduct\n    bottom: x\n"
    assert net_error(text) == "x.yaml:2: layer 'ip' (InnerProduct): num_output: required"


def test_out_of_range():
    text = "layer:\n  - name: drop\n    type: Dropout\n    dropout_ratio: 1.5\n"
    assert net_error(text) == "x.yaml:4: layer 'drop' (Dropout): dropout_ratio: must be < 1.0, got 1.5"


def test_bad_literal_lists_allowed_values():
    text = "layer:\n  - name: pool1\n    type: Pooling\n    pool: MAXX\n"
    assert net_error(text) == ("x.yaml:4: layer 'pool1' (Pooling): pool: must be one of "
                               "'MAX', 'AVE' or 'STOCHASTIC', got 'MAXX'")
    text = "layer:\n  - name: r\n    type: ReLU\n    include: {phase: TRAINN}\n"
    assert net_error(text) == \
        "x.yaml:4: layer 'r' (ReLU): include.phase: must be one of 'TRAIN' or 'TEST', got 'TRAINN'"


def test_unknown_layer_type_lists_known_types_with_hint():
    text = "layer:\n  - name: c\n    type: Convolutoin\n"
    msg = net_error(text)
    assert msg.startswith("x.yaml:3: layer 'c': type: unknown layer type 'Convolutoin' "
                          "(did you mean 'Convolution'?); known: ")
    assert msg.split("known: ")[1].split(", ") == known_types()


def test_netcfg_alone_says_what_it_lacks():
    """netcfg owns the layer-type and ``zoo:`` lookups, which trainnet.layers and trainnet.zoo fill
    from above: read without them, a net says which import is missing, not "unknown type"."""
    code = ("import sys\n"
            "from trainnet.netcfg import load_net, load_net_text\n"
            "assert 'trainnet.layers' not in sys.modules and 'trainnet.zoo' not in sys.modules\n"
            "for load in (lambda: load_net_text('layer: [{name: a, type: ReLU}]', 'x.yaml'),\n"
            "             lambda: load_net('zoo:lenet')):\n"
            "    try:\n        load()\n    except RuntimeError as exc:\n        print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith("no layer types are registered: import trainnet.layers")
    assert out[1].startswith("zoo:lenet: no model zoo is registered for zoo:NAME: import trainnet.zoo")


def test_missing_type():
    assert net_error("layer:\n  - name: c\n    bottom: x\n") == \
        "x.yaml:2: layer 'c': type: required (a layer type such as Convolution)"


def test_nested_param_block_says_fields_sit_on_the_layer():
    text = conv2_with("    convolution_param:\n      kernel_size: 3\n")
    assert net_error(text) == ("x.yaml:18: layer 'conv2' (Convolution): convolution_param: in YAML "
                               "a layer's parameters sit directly on the layer; move its fields up "
                               "one level")


def test_net_level_errors():
    assert net_error("name: n\nlayerz: []\n") == "x.yaml:2: layerz: unknown key (did you mean 'layer'?)"
    assert net_error("name: n\nlayers: []\n") == \
        "x.yaml:2: layers: the list of layers is named 'layer' (as in Caffe)"
    assert net_error("name: n\nforce_backward: 3\n") == \
        "x.yaml:2: force_backward: expects true or false, got int 3"


def test_yaml_syntax_error_names_file_and_line():
    text = "name: n\nlayer:\n  - name: a\n    type: ReLU\n   bottom: x\n"
    msg = net_error(text)
    assert msg.startswith("x.yaml:5: YAML syntax error: ")


def test_duplicate_key_is_an_error():
    text = "name: n\nlayer:\n  - name: a\n    type: ReLU\n    name: b\n"
    assert net_error(text) == "x.yaml:5: duplicate key 'name'"


def test_empty_file(tmp_path):
    assert net_error("") == "x.yaml: the file is empty"
    assert net_error("# only a comment\n") == "x.yaml: the file is empty"
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="the file is empty") as info:
        load_net(path)
    assert info.value.file == str(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_net(path)
    assert str(info.value) == f"{path}: no such config file"
    with pytest.raises(ConfigError) as info:
        load_solver(path)
    assert str(info.value) == f"{path}: no such config file"


def test_error_carries_its_parts():
    with pytest.raises(ConfigError) as info:
        load_net_text(conv2_with("    kernel_size: -1\n"), "x.yaml")
    err = info.value
    assert (err.file, err.line, err.layer, err.layer_type, err.field) == \
        ("x.yaml", 18, "conv2", "Convolution", "kernel_size")


# --- solver errors -----------------------------------------------------------------------------

def test_solver_unknown_lr_policy_with_hint():
    msg = solver_error("net: n.yaml\nbase_lr: 0.1\nlr_policy: stepp\n")
    assert msg.startswith("s.yaml:3: unknown lr_policy 'stepp' (did you mean 'step'?); known: ")
    assert "fixed" in msg and "inv" in msg and "poly" in msg


def test_solver_step_policy_needs_stepsize():
    assert solver_error("net: n.yaml\nlr_policy: step\ngamma: 0.1\n") == \
        "s.yaml:2: lr_policy step needs stepsize > 0"
    assert load_solver_text("net: n.yaml\nlr_policy: step\ngamma: 0.1\nstepsize: 10\n").stepsize == 10


def test_solver_test_interval_needs_test_iter():
    assert solver_error("net: n.yaml\nbase_lr: 0.1\ntest_interval: 100\n") == \
        ("s.yaml:3: test_interval: set, but test_iter is not: give the number of test batches "
         "per test")
    assert load_solver_text("net: n.yaml\ntest_iter: 5\ntest_interval: 100\n").test_iter == [5]


def test_solver_unknown_key_and_missing_net():
    assert solver_error("net: n.yaml\nbase_rl: 0.1\n") == \
        "s.yaml:2: base_rl: unknown key (did you mean 'base_lr'?)"
    assert solver_error("base_lr: 0.1\n") == (
        "s.yaml:1: a solver names its train net by exactly one of net, net_param, train_net, "
        "train_net_param; this one gives none")
    assert solver_error("net: n.yaml\ntype: SDG\n").startswith(
        "s.yaml:2: unknown solver type 'SDG' (did you mean 'SGD'?)")
    assert solver_error("net: n.yaml\nbase_lr: -1\n") == "s.yaml:2: base_lr: must be >= 0.0, got -1"
    assert solver_error("net: n.yaml\ntest_iter: [5, 5]\n") == (
        "s.yaml:2: gives 2 test nets but test_interval is 0, so none would ever run: set "
        "test_interval (Caffe requires it > 0 when there are test nets)")


# --- round trips -------------------------------------------------------------------------------

EVERY_TYPE_DIR = Path(__file__).parent / "every_type"


def every_type_text() -> str:
    """One net holding every layer catalogue under tests/every_type/ (a file per group of layer
    types, each layer with non-default values of its fields); it is loaded, not compiled."""
    parts = [f.read_text() for f in sorted(EVERY_TYPE_DIR.glob("*.yaml"))]
    return ("name: every-type\nforce_backward: true\n"
            "state: {phase: TRAIN, level: 2, stage: [deploy]}\nlayer:\n" + "".join(parts))


EVERY_TYPE = every_type_text()


def reload(cfg: NetConfig, file: str = "rt.yaml") -> NetConfig:
    return load_net_text(yaml.safe_dump(dump_net(cfg), sort_keys=False), file)


def test_round_trip_config_uses_every_layer_type():
    cfg = load_net_text(EVERY_TYPE, "every.yaml")
    assert sorted({l.type for l in cfg.layer}) == known_types(), \
        "add every new layer type to a catalogue in tests/every_type/ so that its round trips are tested"


def test_round_trip_every_layer_type():
    cfg = load_net_text(EVERY_TYPE, "every.yaml")
    again = reload(cfg)
    assert without_location(again) == without_location(cfg)
    for before, after in zip(cfg.layer, again.layer):  # one by one, for a readable failure
        assert after.model_copy(update={"line": None}) == before.model_copy(update={"line": None}), \
            before.name
    assert dump_net(again) == dump_net(cfg)
    # a second trip changes nothing either
    assert without_location(reload(again)) == without_location(cfg)


def test_dump_leaves_defaults_out_and_flattens_params():
    cfg = load_net_text(EVERY_TYPE, "every.yaml")
    layers = {l["name"]: l for l in dump_net(cfg)["layer"]}
    assert layers["relu"] == {"name": "relu", "type": "ReLU", "bottom": ["pool"], "top": ["pool"],
                              "negative_slope": 0.1}
    assert layers["split"] == {"name": "split", "type": "Split", "bottom": ["ip"],
                               "top": ["ip_a", "ip_b", "ip_c"]}
    assert layers["conv"]["weight_filler"] == {"type": "gaussian", "std": 0.01}
    assert "convolution_param" not in layers["conv"] and "params" not in layers["conv"]
    assert "line" not in layers["conv"] and "file" not in dump_net(cfg)
    assert dump_net(cfg)["state"] == {"phase": "TRAIN", "level": 2, "stage": ["deploy"]}


def test_round_trip_lenet():
    cfg = load_net(LENET / "lenet_train_test.yaml")
    again = reload(cfg)
    assert without_location(again) == without_location(cfg)
    assert dump_net(again) == dump_net(cfg)


def test_include_and_exclude_together_are_refused():
    text = "layer:\n  - {name: in, type: Input, top: x, shape: {dim: [2]},\n     include: {phase: TRAIN}, exclude: {phase: TEST}}\n"
    with pytest.raises(ConfigError, match=r"^g.yaml:2: layer 'in' \(Input\): give include rules or "
                                          r"exclude rules, not both"):
        load_net_text(text, "g.yaml")
