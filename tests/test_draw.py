"""`trainnet draw` and trainnet.caffe.draw, driven as a user would: pictures of LeNet as SVG, PNG,
PDF and DOT, by Graphviz (a fake `dot` on PATH) or by trainnet's own renderer, and bad input."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hostile import ROOT, assert_one_error, cli
from PIL import Image

LENET = ROOT / "configs" / "lenet" / "lenet_train_test.yaml"
TRAIN_LAYERS = ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]
TRAIN_SHAPES = ["64x1x28x28", "64x20x24x24", "64x20x12x12", "64x50x8x8", "64x50x4x4", "64x500",
                "64x10"]


@pytest.fixture
def no_dot(tmp_path, monkeypatch):
    """A PATH without Graphviz: trainnet's own renderer draws."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def lenet(mnist_dir, monkeypatch):
    """LeNet's train/test config, its MNIST files found through TRAINNET_DATA."""
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    return LENET


def draw(*args) -> tuple[str, str]:
    outcome = cli("draw", *args)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stderr == ""
    return outcome.stdout, outcome.stderr


def svg_texts(path: Path) -> list[str]:
    root = ET.fromstring(path.read_text())  # well-formed XML
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_svg_holds_every_layer_and_blob_shape(lenet, tmp_path, no_dot):
    out = tmp_path / "net.svg"
    stdout, _ = draw(lenet, "-o", out)
    texts = svg_texts(out)
    for name in TRAIN_LAYERS:
        assert name in texts, name
    for shape in TRAIN_SHAPES:
        assert shape in texts, shape
    assert "out 20, kernel 5, stride 1" in texts  # key parameters on the node
    notes = [line for line in stdout.splitlines() if "own renderer" in line]
    assert len(notes) == 1 and "apt install graphviz" in notes[0] and "brew" in notes[0]


def test_png_decodes_and_pdf_is_a_pdf(lenet, tmp_path, no_dot):
    draw(lenet, "-o", tmp_path / "net.png")
    image = Image.open(tmp_path / "net.png")
    image.load()
    assert image.format == "PNG" and image.width > 1000 and 100 < image.height < image.width
    draw(lenet, "-o", tmp_path / "net.pdf")
    assert (tmp_path / "net.pdf").read_bytes().startswith(b"%PDF")


def test_rankdir_turns_the_layout(lenet, tmp_path, no_dot):
    sizes = {}
    for rankdir in ("LR", "TB"):
        draw(lenet, "-o", tmp_path / f"{rankdir}.png", "--rankdir", rankdir)
        sizes[rankdir] = Image.open(tmp_path / f"{rankdir}.png").size
    assert sizes["LR"][0] > sizes["LR"][1]  # a row of layers
    assert sizes["TB"][1] > sizes["TB"][0]  # a column
    draw(lenet, "-o", tmp_path / "tb.dot", "--rankdir", "TB")
    assert "rankdir=TB;" in (tmp_path / "tb.dot").read_text()


def test_rankdir_orders_the_layers(tmp_path, no_dot):
    """The data layer comes first along the rank direction: left for LR, right for RL, top for
    TB, bottom for BT (read from the SVG's boxes)."""
    where = {}
    for rankdir in ("LR", "RL", "TB", "BT"):
        out = tmp_path / f"{rankdir}.svg"
        draw("zoo:lenet", "--phase", "TEST", "--rankdir", rankdir, "-o", out)
        root = ET.fromstring(out.read_text())
        boxes = {g.find("{*}title").text: g.find("{*}rect") for g in root.findall(".//{*}g")
                 if not g.get("id").startswith("out")}  # layers, not the output blobs
        where[rankdir] = [(float(boxes[n].get("x")), float(boxes[n].get("y"))) for n in ("data", "prob")]
    assert where["LR"][0][0] < where["LR"][1][0] and where["RL"][0][0] > where["RL"][1][0]
    assert where["TB"][0][1] < where["TB"][1][1] and where["BT"][0][1] > where["BT"][1][1]


def test_plan_shows_splits_fusions_and_memory(lenet, tmp_path, no_dot):
    out = tmp_path / "plan.svg"
    draw(lenet, "--plan", "--phase", "TEST", "-o", out)
    texts = svg_texts(out)
    assert "inserted split" in texts and "label_mnist_1_split" in texts
    assert "fused relu1" in texts and "relu1" not in texts  # folded into ip1, not a step
    assert any(re.fullmatch(r"data @[\d,]+ \d.*(B|KiB|MiB)", t) for t in texts), texts
    assert "accuracy" in texts
    net = tmp_path / "net.svg"
    draw(lenet, "--phase", "TEST", "-o", net)
    assert "relu1" in svg_texts(net) and "inserted split" not in svg_texts(net)


def test_dot_text_is_a_graph_with_every_layer(lenet, tmp_path):
    out = tmp_path / "net.dot"
    stdout, _ = draw(lenet, "-o", out)
    text = out.read_text()
    assert "own renderer" not in stdout  # .dot is the text itself, whatever is installed
    assert text.startswith('digraph "LeNet" {') and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    nodes = dict(re.findall(r'^\s+(\w+) \[label="([^"\\]+)', text, re.M))
    assert sorted(set(TRAIN_LAYERS) - set(nodes.values())) == []
    for src, dst in re.findall(r"^\s+(\w+) -> (\w+) ", text, re.M):
        assert src in nodes and dst in nodes
    chain = {(nodes[s], nodes[d]) for s, d in re.findall(r"^\s+(\w+) -> (\w+) ", text, re.M)}
    assert {("ip1", "relu1"), ("relu1", "ip2")} <= chain  # in place: a node on ip1's chain


def fake_dot(tmp_path: Path, monkeypatch, status: int = 0) -> Path:
    """A `dot` first on PATH that records its arguments and input and answers a fixed picture."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "dot"
    script.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/dot-args"\ncat > "{tmp_path}/dot-in"\n'
                      + ("echo 'syntax error in line 1' >&2\n" if status else "")
                      + f"printf 'FAKE-PICTURE'\nexit {status}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return tmp_path


def test_graphviz_renders_when_dot_is_on_path(tmp_path, monkeypatch):
    where = fake_dot(tmp_path, monkeypatch)
    stdout, _ = draw("zoo:lenet", "--phase", "TEST", "-o", tmp_path / "net.png")
    assert (tmp_path / "net.png").read_bytes() == b"FAKE-PICTURE"
    assert (where / "dot-args").read_text().split() == ["-Tpng"]
    assert (where / "dot-in").read_text().startswith("digraph")
    assert "own renderer" not in stdout


def test_a_failing_graphviz_is_one_error(tmp_path, monkeypatch):
    fake_dot(tmp_path, monkeypatch, status=1)
    outcome = cli("draw", "zoo:lenet", "--phase", "TEST", "-o", tmp_path / "net.svg")
    assert_one_error(outcome, "Graphviz", "syntax error in line 1")
    assert not (tmp_path / "net.svg").exists()


def test_caffe_draw_on_a_netspec(tmp_path, no_dot):
    from trainnet import caffe
    from trainnet.caffe import draw as caffe_draw
    from trainnet.caffe import layers as L
    from trainnet.caffe import params as P

    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[8, 1, 28, 28]), dict(dim=[8])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20)
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool1, num_output=10)
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.loss = L.SoftmaxWithLoss(n.ip1, n.label)
    net = n.to_proto()
    note = caffe_draw.draw_net_to_file(net, str(tmp_path / "spec.svg"), "TB", phase=caffe.TRAIN)
    assert "own renderer" in note
    texts = svg_texts(tmp_path / "spec.svg")
    assert {"conv1", "pool1", "ip1", "relu1", "loss", "8x20x24x24", "8x20x12x12"} <= set(texts)
    assert Image.open(io.BytesIO(caffe_draw.draw_net(net, "LR"))).format == "PNG"
    assert caffe_draw.draw_net(net, "LR", ext="pdf").startswith(b"%PDF")
    dot = caffe_draw.get_graph_dot(net, "LR")  # phase None: every layer, no shapes
    assert 'label="relu1\\nReLU"' in dot and "8x20" not in dot


def test_caffe_draw_every_phase_of_a_prototxt(tmp_path, no_dot):
    from google.protobuf import text_format

    from trainnet.caffe import draw as caffe_draw
    from trainnet.caffe.proto import caffe_pb2
    from trainnet.netcfg import load_net

    net = caffe_pb2.NetParameter()
    yaml_dot = caffe_draw.get_graph_dot(load_net(str(LENET)), "LR")
    text_format.Merge(_lenet_prototxt(), net)
    dot = caffe_draw.get_graph_dot(net, "LR")
    for dot_text in (yaml_dot, dot):
        assert "phase TRAIN" in dot_text and "phase TEST" in dot_text and "accuracy" in dot_text


def _lenet_prototxt() -> str:
    layers = ['layer { name: "mnist" type: "Input" top: "data" include { phase: TRAIN } '
              'input_param { shape { dim: 2 dim: 1 dim: 28 dim: 28 } } }',
              'layer { name: "mnist" type: "Input" top: "data" include { phase: TEST } '
              'input_param { shape { dim: 3 dim: 1 dim: 28 dim: 28 } } }',
              'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
              'inner_product_param { num_output: 10 } }',
              'layer { name: "accuracy" type: "ArgMax" bottom: "ip" top: "accuracy" '
              'include { phase: TEST } }']
    return 'name: "tiny"\n' + "\n".join(layers)


@pytest.mark.parametrize("case", ["suffix", "unwritable", "bad net", "no output"])
def test_bad_input_is_one_error(case, tmp_path, no_dot):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nlayer:\n  - {name: x, type: NoSuchLayer, top: x}\n")
    (tmp_path / "file").write_text("")
    args, fragments = {
        "suffix": (["zoo:lenet", "-o", tmp_path / "net.jpg"], ["net.jpg", "unknown picture format"]),
        "unwritable": (["zoo:lenet", "--phase", "TEST", "-o", tmp_path / "file" / "net.svg"],
                       ["cannot write"]),
        "bad net": ([bad, "-o", tmp_path / "net.svg"], ["bad.yaml", "NoSuchLayer"]),
        "no output": (["zoo:lenet"], ["-o"]),
    }[case]
    assert_one_error(cli("draw", *args), *fragments)
    assert not (tmp_path / "net.svg").exists() and not (tmp_path / "net.jpg").exists()


def test_a_wide_net_draws_at_a_scale_pillow_can_hold(tmp_path, no_dot):
    """ResNet-50 left to right is over 65500 pixels wide at twice the SVG's size (Pillow's JPEG
    encoder, which a PDF's image goes through, refuses it): drawn at the SVG's size instead,
    the TB picture still at twice it."""
    draw("zoo:resnet50", "-o", tmp_path / "r.png")
    image = Image.open(tmp_path / "r.png")
    image.load()
    assert image.format == "PNG" and 40000 < image.width <= 65500 and image.height < 1000
    draw("zoo:resnet50", "-o", tmp_path / "r.pdf")
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    assert b"%%EOF" in (tmp_path / "r.pdf").read_bytes()[-64:]
    draw("zoo:resnet50", "--rankdir", "TB", "-o", tmp_path / "tb.png")
    tall = Image.open(tmp_path / "tb.png")
    assert 40000 < tall.height <= 65500  # at 2x: about 26600 at 1x


@pytest.mark.parametrize("suffix", ["png", "pdf"])
def test_a_picture_too_large_even_at_1x_is_one_error(suffix, tmp_path, no_dot, monkeypatch):
    from trainnet.tools import draw_render
    monkeypatch.setattr(draw_render, "MAX_SIDE", 20000)
    assert_one_error(cli("draw", "zoo:resnet50", "-o", tmp_path / f"r.{suffix}"),
                     "'ResNet-50'", "pixels", "--rankdir TB", ".svg")
    assert not (tmp_path / f"r.{suffix}").exists()
