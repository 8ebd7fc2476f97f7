"""`trainnet convert` between prototxt and YAML, with the preprocessing record."""

from pathlib import Path

import yaml
from click.testing import CliRunner

from test_netcfg import without_location
from test_prototxt import SOLVER, V1
from trainnet.cli import main
from trainnet.netcfg import load_net, load_solver

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


def test_prototxt_net_to_yaml_and_back(tmp_path):
    src = tmp_path / "v1.prototxt"
    src.write_text(V1)
    result = run(src, tmp_path / "net.yaml", "--channel-order", "BGR", "--mean-value", "104,117,123",
                 "--raw-scale", "255", "--resize", "256,256")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Wrote {tmp_path / 'net.yaml'} (net)")
    text = (tmp_path / "net.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["preprocess"] == {"mean_value": [104.0, 117.0, 123.0], "resize": [256, 256]}
    conv = next(l for l in data["layer"] if l["name"] == "conv1")
    assert conv["num_output"] == 4 and "convolution_param" not in conv
    yaml_net = load_net(tmp_path / "net.yaml")
    assert yaml_net.preprocess.channel_order == "BGR"

    result = run(tmp_path / "net.yaml", tmp_path / "again.prototxt")
    assert result.exit_code == 0, result.output
    assert "prototxt has no field for the preprocessing record" in result.output
    again = load_net(tmp_path / "again.prototxt")
    assert without_location(again) == without_location(yaml_net.model_copy(update={"preprocess": None}))


def test_net_without_preprocessing_says_so(tmp_path):
    src = tmp_path / "v1.prototxt"
    src.write_text(V1)
    result = run(src, tmp_path / "net.yaml")
    assert result.exit_code == 0
    assert "Note: no preprocessing recorded" in result.output
    assert "preprocess" not in yaml.safe_load((tmp_path / "net.yaml").read_text())


def test_solver_prototxt_to_yaml(tmp_path):
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    result = run(tmp_path / "solver.prototxt", tmp_path / "solver.yaml")
    assert result.exit_code == 0, result.output
    assert "(solver)" in result.output and "convert that file too" in result.output
    cfg = load_solver(tmp_path / "solver.yaml")
    assert (cfg.type, cfg.max_iter, cfg.net) == ("Nesterov", 8, "net.prototxt")
    again = load_solver(tmp_path / "solver.prototxt")
    assert cfg.model_copy(update={"file": None}) == again.model_copy(update={"file": None})


def test_convert_errors_are_one_line(tmp_path):
    result = run(tmp_path / "missing.prototxt", tmp_path / "x.yaml")
    assert result.exit_code == 1 and result.output == f"error: {tmp_path / 'missing.prototxt'}: no such file\n"
    (tmp_path / "bad.prototxt").write_text('layer { name: "a" type: "Convolution"\n')
    result = run(tmp_path / "bad.prototxt", tmp_path / "x.yaml")
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {tmp_path / 'bad.prototxt'}:1: prototxt syntax error")
    assert not (tmp_path / "x.yaml").exists()
    (tmp_path / "v1.prototxt").write_text(V1)
    result = run(tmp_path / "v1.prototxt", tmp_path / "x.yaml", "--mean-value", "1,a")
    assert result.exit_code == 1 and result.output.startswith("error: preprocessing options:")
    result = run(tmp_path / "v1.prototxt", tmp_path / "x.txt")
    assert result.exit_code == 1 and "write a config as .yaml or .prototxt" in result.output


def test_names_that_look_like_numbers_stay_strings(tmp_path):
    src = tmp_path / "net.prototxt"
    src.write_text('name: "1e3"\nlayer { name: "1e3" type: "Input" top: "010" '
                   'input_param { shape { dim: 1 dim: 2 } } }\n')
    out = tmp_path / "net.yaml"
    result = CliRunner().invoke(main, ["convert", str(src), str(out)])
    assert result.exit_code == 0, result.output
    net = load_net(out)
    assert net.name == "1e3" and net.layer[0].name == "1e3" and net.layer[0].top == ["010"]


def test_snapshot_keep_is_noted_as_trainnets_own(tmp_path):
    (tmp_path / "solver.yaml").write_text("net: net.prototxt\nbase_lr: 0.1\nsnapshot_keep: 3\n"
                                          "snapshot_format: BINARYPROTO\nloss_explosion_factor: 5\n")
    result = run(tmp_path / "solver.yaml", tmp_path / "solver.prototxt")
    assert result.exit_code == 0, result.output
    assert "snapshot_keep: 3 is trainnet's own" in result.output
    assert "loss_explosion_factor: 5 is trainnet's own" in result.output
    assert load_solver(tmp_path / "solver.prototxt").snapshot_keep == 3
    assert load_solver(tmp_path / "solver.prototxt").loss_explosion_factor == 5
