"""Every bad layer of a net is reported at once, each on its own located line, in file order;
errors of the prototxt reader itself name the file and the line."""

import pytest
from click.testing import CliRunner

from trainnet.errors import ConfigError, ConfigErrors
from trainnet.layers import known_types
from trainnet.netcfg import load_net_text, load_solver_text


def net_errors(text: str, file: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_net_text(text, file)
    return str(info.value).splitlines()


BAD_YAML = """\
name: bad
layer:
  - {name: in, type: Input, top: x, shape: {dim: [2, 3, 8, 8]}}
  - {name: c1, type: Convolution, bottom: x, top: c1, num_output: 4, kernel_size: 0}
  - {name: ok, type: ReLU, bottom: c1, top: c1}
  - {name: p1, type: Poolng, bottom: c1, top: p1}
  - {name: ip, type: InnerProduct, bottom: p1, top: ip, num_output: 3, bias_trem: false}
  - {name: d, type: Dropout, bottom: ip, top: ip, convolution_param: {num_output: 2}}
  - {name: r, type: ReLU, bottom: ip, top: ip, negative_slope: x}
"""


def test_every_bad_yaml_layer_is_reported_on_its_own_line():
    assert net_errors(BAD_YAML, "bad.yaml") == [
        "bad.yaml:4: layer 'c1' (Convolution): kernel_size: must be >= 1, got 0",
        "bad.yaml:6: layer 'p1': type: unknown layer type 'Poolng' (did you mean 'Pooling'?); known: "
        + ", ".join(known_types()),
        "bad.yaml:7: layer 'ip' (InnerProduct): bias_trem: unknown key (did you mean 'bias_term'?)",
        "bad.yaml:8: layer 'd' (Dropout): convolution_param: in YAML a layer's parameters sit directly "
        "on the layer; move its fields up one level",
        "bad.yaml:9: layer 'r' (ReLU): negative_slope: expects a number, got str 'x'",
    ]


def test_the_error_carries_each_located_error():
    with pytest.raises(ConfigErrors) as info:
        load_net_text(BAD_YAML, "bad.yaml")
    err = info.value
    assert [(e.line, e.layer, e.field) for e in err.errors] == [
        (4, "c1", "kernel_size"), (6, "p1", "type"), (7, "ip", "bias_trem"),
        (8, "d", "convolution_param"), (9, "r", "negative_slope")]
    assert (err.file, err.line, err.layer) == ("bad.yaml", 4, "c1")  # the first, for one-line readers


def test_one_bad_layer_is_a_plain_config_error():
    text = BAD_YAML.split("  - {name: ok")[0]
    with pytest.raises(ConfigError) as info:
        load_net_text(text, "one.yaml")
    assert type(info.value) is ConfigError
    assert str(info.value) == "one.yaml:4: layer 'c1' (Convolution): kernel_size: must be >= 1, got 0"


def test_net_level_error_joins_the_layer_errors():
    text = BAD_YAML.replace("name: bad", "name: bad\nforce_backward: maybe")
    lines = net_errors(text, "bad.yaml")
    assert lines[0] == "bad.yaml:2: force_backward: expects true or false, got str 'maybe'"
    assert len(lines) == 6 and lines[1].startswith("bad.yaml:5: layer 'c1'")


BAD_PROTOTXT = """\
name: "bad"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer {
  name: "c1" type: "Convolution" bottom: "x" top: "c1"
  convolution_param { num_output: 4 kernel_size: 0 }
}
layer { name: "p1" type: "Poolng" bottom: "c1" top: "p1" }
layer {
  name: "pool" type: "Pooling" bottom: "c1" top: "pool"
  convolution_param { num_output: 2 }
}
layer { name: "ok" type: "ReLU" bottom: "pool" top: "pool" }
layer {
  name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 3 }
  softmax_param { axis: 1 }
}
layer {
  name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label"
  softmax_param { ignore_label: 3 }
}
"""


def test_every_bad_prototxt_layer_is_reported_on_its_own_line_in_file_order():
    lines = net_errors(BAD_PROTOTXT, "bad.prototxt")
    assert [line.split(": ", 3)[:3] for line in lines] == [
        ["bad.prototxt:5", "layer 'c1' (Convolution)", "kernel_size"],
        ["bad.prototxt:7", "layer 'p1'", "type"],
        ["bad.prototxt:10", "layer 'pool' (Pooling)", "convolution_param"],
        ["bad.prototxt:16", "layer 'ip' (InnerProduct)", "softmax_param"],
        ["bad.prototxt:20", "layer 'loss' (SoftmaxWithLoss)", "softmax_param.ignore_label"],
    ]
    assert "unknown layer type 'Poolng' (did you mean 'Pooling'?)" in lines[1]
    assert lines[2].endswith("its parameters go in pooling_param")


def test_bad_v1_layers_are_all_reported():
    text = ('name: "v1"\n'
            'layers { name: "a" type: BOGUS }\n'
            'layers { name: "b" type: RELU bottom: "x" top: "x" }\n'
            'layers { name: "c" type: POOLING pooling_param { pool: AVE kernel_sise: 2 } }\n'
            'layers { name: "d" type: INNER_PRODUCT inner_product_param { num_output: -1 } }\n')
    lines = net_errors(text, "v1.prototxt")
    assert lines[0].startswith("v1.prototxt:2: layer 'a': type: unknown V1 layer type 'BOGUS'; known: ")
    assert lines[1:] == [
        "v1.prototxt:4: layer 'c' (Pooling): kernel_sise: unknown key (did you mean 'kernel_size'?)",
        "v1.prototxt:5: layer 'd' (InnerProduct): num_output: must be >= 1, got -1"]


@pytest.mark.parametrize("text, message", [
    ('layer { name: "a"\n type: "ReLU" bottom: [\n', "x.prototxt:2: prototxt syntax error"),
    ('name: "n"\nlayer { name: "a" type: "ReLU" } }\n', "x.prototxt:2: prototxt syntax error"),
    ('layers { name: "a" type: RELU\n layer { name: "old" } }\n',
     "x.prototxt:2: layer 'a': a V0 layer (layers { layer { ... } })"),
    ('input: "data"\ninput_dim: 1\ninput_dim: 2\n', "x.prototxt:2: 1 inputs need 4 input_dim values"),
    ('name: "n"\ninput_shape { dim: 1 }\n', "x.prototxt:2: input_dim/input_shape without input"),
    ('input: "a"\ninput: "b"\ninput_shape { dim: 1 }\n', "x.prototxt:1: 2 inputs but 1 input shapes"),
    ('name: "n"\nlayer: 3\n', "x.prototxt:2: layer: expects a message { ... }"),
])
def test_reader_errors_name_the_file_and_line(text, message):
    lines = net_errors(text, "x.prototxt")
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_solver_reader_errors_name_the_file_and_line():
    for text, message in [('net: "n"\nsolver_type: FAST\n', "s.prototxt:2: solver_type: unknown 'FAST'"),
                          ('net: "n"\nbase_lr: [\n', "s.prototxt:2: prototxt syntax error")]:
        with pytest.raises(ConfigError) as info:
            load_solver_text(text, "s.prototxt")
        assert str(info.value).startswith(message), str(info.value)


def test_bad_layers_of_an_inline_solver_net_are_all_reported():
    text = ('base_lr: 0.1\nlr_policy: "fixed"\nnet_param {\n'
            '  layer { name: "p" type: "Pooling" convolution_param { num_output: 2 } }\n'
            '  layer { name: "ip" type: "InnerProduct" inner_product_param { num_output: -3 } }\n'
            '  layer { name: "t" type: "TanHH" }\n}\n')
    with pytest.raises(ConfigErrors) as info:
        load_solver_text(text, "s.prototxt")
    assert [(e.line, e.layer, e.field) for e in info.value.errors] == [
        (4, "p", "convolution_param"), (5, "ip", "num_output"), (6, "t", "type")]


def test_cli_prints_each_error_on_its_own_line(tmp_path):
    from trainnet.cli import main

    (tmp_path / "bad.prototxt").write_text(BAD_PROTOTXT)
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "bad.prototxt")])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 5 and all(l.startswith(f"error: {tmp_path / 'bad.prototxt'}:") for l in lines)
    assert "Traceback" not in result.output
