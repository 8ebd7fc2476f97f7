"""Hostile configs end in exactly one clean ``error:`` line naming the file (and the line, where
there is one) and a non-zero exit, in bounded time and memory; never a traceback, a hang or a
silent misreading.  Families: YAML bombs and depth, prototxt depth, values YAML 1.1 misreads
(exponent floats, timestamps), merge keys, numbers beyond caffe.proto's types, files that are
not files (a FIFO, /dev/zero, a folder) or too large, the wrong kind of config for a command,
duplicate layer names, click's usage errors and bad preprocessing options.  Sizes and memory
are in test_hostile_sizes.py, speed in test_hostile_config_speed.py.
"""

from __future__ import annotations

import os

import pytest
import yaml

from hostile import assert_one_error, cli
from synthetic import NET, write_project
from trainnet.errors import ConfigError
from trainnet.netcfg import load_net_text, load_solver_text, yaml_reader, yaml_scalars
from trainnet.netcfg.net import parse_net
from trainnet.netcfg.source import load_yaml_text

INPUT_NET = """name: small
layer:
  - {name: data, type: Input, top: [data, label], shape: [{dim: [2, 3, 8, 8]}, {dim: [2]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: NUM}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""
PROTO_NET = """name: "small"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: NUM } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""


def laughs() -> str:
    """The 'billion laughs': nine levels of nine aliases, 10^9 strings from 2 KB."""
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi"):
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text + "layer: *i\n"


def net(num: str = "4") -> str:
    return INPUT_NET.replace("NUM", num)


# (id, file name, text, fragments after "FILE:" in the one error line)
BAD_NETS = [
    ("billion-laughs", "n.yaml", laughs(), [":7: aliases expand this document by more than"]),
    ("alias-cycle", "n.yaml", "layer: &a [1, *a]\n", [":1: alias '*a' refers to the node it is inside"]),
    ("alias-cycle-map", "n.yaml", "layer: &a {x: *a}\n", [":1: alias '*a' refers"]),
    ("unknown-alias", "n.yaml", "layer: *nothing\n", [":1: unknown alias '*nothing'"]),
    ("deep-flow-3000", "n.yaml", "layer: " + "[" * 3000 + "]" * 3000 + "\n",
     [":1: nested deeper than 100 levels"]),
    ("deep-block", "n.yaml", "layer:\n" + "".join(" " * (i + 1) + "-\n" for i in range(150)),
     ["nested deeper than 100 levels"]),
    ("deep-prototxt", "n.prototxt", "layer " + "{ a " * 50000 + "}" * 50000 + "\n",
     [":1: prototxt syntax error: messages nested deeper than 100 levels"]),
    ("braces-prototxt", "n.prototxt", "{" * 50000 + "\n", [":1: prototxt syntax error"]),
    ("python-tag", "n.yaml", "name: !!python/object/apply:os.system ['echo owned']\nlayer: []\n",
     [":1: the tag !!python/object/apply:os.system is not supported"]),
    ("set-tag", "n.yaml", "name: !!set {a, b}\nlayer: []\n", [":1: the tag !!set is not supported"]),
    ("timestamp-tag", "n.yaml", "name: !!timestamp 2001-13-45\nlayer: []\n",
     [":1: the tag !!timestamp is not supported"]),
    ("two-documents", "n.yaml", net() + "---\nname: other\n", [":6: holds several YAML documents"]),
    ("merge-non-mapping", "n.yaml", net().replace("num_output: 4", "<<: 5, num_output: 4"),
     [":4: a merge key (<<) takes a mapping"]),
    ("key-not-string", "n.yaml", net() + "1: x\n", [":6: keys must be strings, got 1"]),
    ("float-for-int", "n.yaml", net("1e9"),
     [":4: layer 'ip1' (InnerProduct): num_output: expects an integer, got float 1000000000.0",
      "write 1000000000"]),
    ("int-beyond-int32", "n.yaml", net(str(2**61)),
     [":4: layer 'ip1' (InnerProduct): num_output:", "32-bit"]),
    ("int-beyond-int64", "n.yaml", net(str(10**30)), [":4: layer 'ip1'", "out of range"]),
    ("int-beyond-int64-prototxt", "n.prototxt", PROTO_NET.replace("NUM", str(10**30)),
     [":5: layer 'ip1' (InnerProduct): num_output:", "out of range"]),
    ("dim-beyond-int64", "n.yaml", net().replace("dim: [2]", f"dim: [{2**70}]"),
     [":3: layer 'data' (Input): shape", "64-bit"]),
    ("inf-float", "n.yaml", net().replace("num_output: 4", "num_output: 4, param: {lr_mult: 1e400}"),
     [":4: layer 'ip1' (InnerProduct): param.lr_mult: must be a finite number, got inf"]),
    ("nan-prototxt", "n.prototxt",
     PROTO_NET.replace("NUM", "4").replace('top: "ip1"', 'top: "ip1" param { lr_mult: nan }'),
     [":4: layer 'ip1'", "must be a finite number, got nan"]),
    ("timestamp-as-number", "n.yaml",
     net().replace("num_output: 4", "num_output: 4, param: {lr_mult: 2001-13-45}"),
     [":4: layer 'ip1' (InnerProduct): param.lr_mult: expects a number, got str '2001-13-45'"]),
    ("not-utf8", "n.yaml", b"name: x\nlayer: []\n# \xff\xfe\n", [":3: is not UTF-8 text"]),
    ("duplicate-layer", "n.yaml", net() + "  - {name: ip1, type: ReLU, bottom: ip1, top: ip1}\n",
     [":6: layer 'ip1' (ReLU): a second layer named 'ip1' in the TRAIN net (also at line 4)"]),
    ("solver-as-net", "s.yaml", "net: n.yaml\nbase_lr: 1e-3\nmax_iter: 10\n",
     [":1: this is a solver (it sets net, base_lr, max_iter), not a net",
      "give the net file it trains (n.yaml)"]),
    ("solver-as-net-prototxt", "s.prototxt", 'net: "n.prototxt"\nbase_lr: 0.01\n',
     [":1: this is a solver", "(n.prototxt)"]),
    ("inline-solver-as-net", "s.yaml", "net_param: {layer: []}\nbase_lr: 0.1\n",
     [":1: this is a solver", "writes its net inside it"]),
]


@pytest.mark.parametrize("case", BAD_NETS, ids=[c[0] for c in BAD_NETS])
def test_a_bad_net_is_one_located_line(tmp_path, case):
    _, name, text, fragments = case
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    outcome = cli("plan", path)
    assert_one_error(outcome, *[f"{path}{f}" if f.startswith(":") else f for f in fragments])


BAD_SOLVERS = [
    ("inf-base-lr", "base_lr: 1e400\n", [":3: base_lr: must be a finite number, got inf"]),
    ("timestamp-base-lr", "base_lr: 2001-13-45\n", [":3: base_lr: expects a number, got str"]),
    ("float-max-iter", "max_iter: 1e4\n", [":3: max_iter: expects an integer", "write 10000"]),
    ("int64-max-iter", f"max_iter: {2**40}\n", [":3: max_iter:", "32-bit"]),
    ("laughs", laughs().replace("layer: *i", "test_iter: *i"), ["aliases expand"]),
]


@pytest.mark.parametrize("case", BAD_SOLVERS, ids=[c[0] for c in BAD_SOLVERS])
def test_a_bad_solver_is_one_located_line(tmp_path, case):
    _, body, fragments = case
    (tmp_path / "n.yaml").write_text(net())
    path = tmp_path / "s.yaml"
    path.write_text("net: n.yaml\nmax_iter: 1\n" + body if "max_iter" not in body
                    else "net: n.yaml\nbase_lr: 0.1\n" + body)
    outcome = cli("train", path, "--device", "cpu")
    assert_one_error(outcome, *[f"{path}{f}" if f.startswith(":") else f for f in fragments])


def test_a_net_given_to_train_names_both_kinds(tmp_path):
    (tmp_path / "n.yaml").write_text(net())
    outcome = cli("train", tmp_path / "n.yaml", "--device", "cpu")
    assert_one_error(outcome, f"{tmp_path / 'n.yaml'}:2: this is a net (it sets layer), not a "
                     "solver", f"(net: {tmp_path / 'n.yaml'})")
    (tmp_path / "n.prototxt").write_text(PROTO_NET.replace("NUM", "4"))
    outcome = cli("train", tmp_path / "n.prototxt", "--device", "cpu")
    assert_one_error(outcome, f"{tmp_path / 'n.prototxt'}:2: this is a net", "not a solver")


# --- files that are not config files ------------------------------------------------------------

def test_dev_zero_is_refused_unread():
    outcome = cli("plan", "/dev/zero")
    assert_one_error(outcome, "/dev/zero: is not a regular file (a character device)")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "net.yaml"
    os.mkfifo(fifo)
    assert_one_error(cli("plan", fifo), f"{fifo}: is not a regular file (a FIFO)")
    assert_one_error(cli("train", fifo), f"{fifo}: is not a regular file (a FIFO)")


def test_a_folder_and_a_huge_file_are_refused(tmp_path):
    folder = tmp_path / "net.prototxt"   # named by a solver (click checks its own arguments)
    folder.mkdir()
    (tmp_path / "s.yaml").write_text(f"net: {folder}\nbase_lr: 0.1\n")
    assert_one_error(cli("train", tmp_path / "s.yaml", "--device", "cpu"),
                     f"{folder}: is a folder")
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:   # sparse: 300 MiB that take no disk
        f.truncate(300 * 2**20)
    assert_one_error(cli("plan", huge), f"{huge}: is 300 MiB; a config file may hold at most 64 MiB")


# --- what is read right -------------------------------------------------------------------------

def test_exponent_floats_are_numbers_in_solvers_and_nets():
    cfg = load_solver_text("net: n.yaml\nbase_lr: 1e-3\nweight_decay: 5e-4\nmomentum: .9\n"
                           "delta: 1E-8\nclip_gradients: -1e-4\ngamma: .5e-3\n", "s.yaml")
    assert (cfg.base_lr, cfg.weight_decay, cfg.momentum) == (1e-3, 5e-4, 0.9)
    assert (cfg.delta, cfg.clip_gradients, cfg.gamma) == (1e-8, -1e-4, 0.5e-3)
    layer = load_net_text(net().replace("num_output: 4", "num_output: 4, param: {lr_mult: 1E5}, "
                                        "weight_filler: {type: gaussian, std: 1e-2}"), "n.yaml").layer[1]
    assert layer.param[0].lr_mult == 1e5 and layer.params.weight_filler.std == 0.01


def test_yaml_12_numbers_and_11_booleans():
    data, _ = load_yaml_text("a: 010\nb: 0x1F\nc: 1:30\nd: 1_000\ne: .inf\nf: yes\ng: '1e3'\n"
                             "h: 2001-12-14\ni: 1.\nj: -.5\nk: +1e+2\n")
    assert data == {"a": 10, "b": 31, "c": "1:30", "d": 1000, "e": float("inf"), "f": True,
                    "g": "1e3", "h": "2001-12-14", "i": 1.0, "j": -0.5, "k": 100.0}


def test_timestamps_are_strings(tmp_path):
    (tmp_path / "n.yaml").write_text(net().replace("name: small", "name: 2001-13-45"))
    outcome = cli("plan", tmp_path / "n.yaml")
    assert outcome.code == 0 and "net '2001-13-45'" in outcome.stdout


MERGED = """name: merged
defaults: &fc {num_output: 4, weight_filler: {type: gaussian, std: 0.5}}
layer:
  - {name: data, type: Input, top: [data, label], shape: [{dim: [2, 3]}, {dim: [2]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, <<: *fc}
  - name: ip2
    type: InnerProduct
    bottom: ip1
    top: ip2
    <<: *fc
    num_output: 3
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""


def test_merge_keys_merge_as_yaml_defines_them():
    data, src = load_yaml_text(MERGED, "m.yaml")
    ip1, ip2 = data["layer"][1], data["layer"][2]
    assert ip1["num_output"] == 4 and ip2["num_output"] == 3   # a key of the mapping wins
    assert ip2["weight_filler"] == {"type": "gaussian", "std": 0.5}
    assert src.line(("layer", 2, "num_output")) == 11
    assert src.line(("layer", 2, "weight_filler", "std")) == 2   # where the value is written
    data, _ = load_yaml_text("a: &a {x: 1}\nb: &b {x: 2, y: 3}\nc: {<<: [*a, *b], z: 4}\n")
    assert data["c"] == {"x": 1, "y": 3, "z": 4}                 # the earlier mapping wins
    with pytest.raises(ConfigError, match=r"m.yaml:2: defaults: unknown key"):
        load_net_text(MERGED, "m.yaml")   # a net has no 'defaults' key of its own


def test_merged_values_are_validated_where_they_are_written(tmp_path):
    text = MERGED.replace("std: 0.5", "std: -1")
    data, src = load_yaml_text(text, "m.yaml")
    del data["defaults"]
    with pytest.raises(ConfigError) as err:
        parse_net(data, src)
    assert "m.yaml:2: layer 'ip1' (InnerProduct): weight_filler.std: must be >= 0" in str(err.value)


def test_same_name_in_train_and_test_is_allowed(tmp_path):
    solver = write_project(tmp_path)
    assert NET.count("name: data,") == 2   # one Data layer per phase, as Caffe's nets have
    for phase in ("TRAIN", "TEST"):
        assert cli("plan", tmp_path / "net.yaml", "--phase", phase).code == 0
    outcome = cli("train", solver, "--device", "cpu")
    assert outcome.code == 0, outcome.stderr


def test_the_pure_python_parser_reads_alike(monkeypatch, tmp_path):
    """Where PyYAML lacks libyaml, its own parser feeds the same reader."""
    texts = [MERGED, net("1e9"), laughs(), "layer: " + "[" * 200 + "]" * 200, "a: &a [*a]\n",
             "a: 1e-3\nb: 2001-13-45\nc: 010\n"]

    def read(text):
        try:
            return load_yaml_text(text, "x.yaml")
        except ConfigError as exc:
            return str(exc)

    fast = [read(t) for t in texts]
    monkeypatch.setattr(yaml_reader, "LOADER", yaml.SafeLoader)
    slow = [read(t) for t in texts]
    for a, b in zip(fast, slow):
        if isinstance(a, str):
            assert a == b
        else:
            assert a[0] == b[0] and a[1].lines == b[1].lines


# --- the command line ---------------------------------------------------------------------------

USAGE = [
    (("train", "--foo", "s.yaml"), [" train: No such option '--foo'."]),
    (("train",), [" train: Missing argument 'SOLVER'."]),
    (("plan", "n.yaml", "--phase", "X"), ["Invalid value for '--phase': 'X' is not one of"]),
    (("plan", "n.yaml", "--phas", "TEST"), ["Did you mean '--phase'?"]),
    (("nosuch",), ["No such command 'nosuch'."]),
    (("zoo", "show"), [" zoo show: Missing argument 'NAME'."]),
    (("test", "--model", "n.yaml", "--weights", "w", "--iterations", "0"),
     ["'--iterations': 0 is not in the range"]),
    (("--badopt",), ["No such option '--badopt'"]),
]


@pytest.mark.parametrize("args, fragments", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_line_with_status_2(args, fragments):
    outcome = cli(*args)
    line = assert_one_error(outcome, *fragments, code=2)
    assert line.endswith("--help for usage)")


PREPROCESS = [
    (("--raw-scale", "-1"), "preprocessing options: --raw-scale: must be > 0"),
    (("--mean-value", "104,x"), "preprocessing options: --mean-value: 'x' is not a number"),
    (("--resize", "0,5"), "preprocessing options: --resize: must be >= 1, got 0"),
    (("--resize", "1.5"), "preprocessing options: --resize: '1.5' is not a whole number"),
    (("--input-scale", "inf"), "preprocessing options: --input-scale: must be a finite number"),
]


@pytest.mark.parametrize("args, fragment", PREPROCESS, ids=[a[0] for a, _ in PREPROCESS])
def test_bad_preprocessing_options_are_one_line(tmp_path, args, fragment):
    (tmp_path / "n.yaml").write_text(net())
    outcome = cli("convert", tmp_path / "n.yaml", tmp_path / "o.yaml", *args)
    assert_one_error(outcome, fragment)
    assert not (tmp_path / "o.yaml").exists()


@pytest.mark.parametrize("record, fragment", [
    ("{raw_scale: -1}", ":6: preprocess.raw_scale: must be > 0"),
    ("5", ":6: preprocess: expects a mapping"),
    ("{mean_value: [1, x]}", ":6: preprocess.mean_value[1]: expects a number"),
    ("{channel_order: XYZ}", ":6: preprocess.channel_order: must be one of"),
])
def test_a_bad_preprocess_record_is_one_located_line(tmp_path, record, fragment):
    path = tmp_path / "n.yaml"
    path.write_text(net() + f"preprocess: {record}\n")
    assert_one_error(cli("plan", path), f"{path}{fragment}")


def test_the_dumper_quotes_strings_this_reader_takes_for_numbers():
    data = {"name": "1e3", "a": ".5", "b": "2001-12-14", "c": 1e-5, "d": [1.5, "1E5"], "e": 10}
    text = yaml.dump(data, Dumper=yaml_scalars.Dumper, sort_keys=False)
    assert load_yaml_text(text)[0] == data
    assert load_yaml_text(yaml.safe_dump(data))[0]["name"] == 1000.0   # why convert needs it
