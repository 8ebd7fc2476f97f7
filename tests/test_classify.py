"""`trainnet classify`: image preparation as pycaffe's, and real digits through the Caffe LeNet."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import data_root
from trainnet.cli import main
from trainnet.netcfg.common import Preprocess
from trainnet.zoo.classify import prepare, read_labels


def test_prepare_resizes_crops_reorders_and_subtracts_as_pycaffe():
    """An RGB image in [0, 1]: centre crop 2x2 of a 4x4, BGR, x255, minus the mean, times 0.5."""
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(4, 4, 3)).astype(np.float32)
    pre = Preprocess(channel_order="BGR", raw_scale=255, mean_value=[10, 20, 30], input_scale=0.5,
                     resize=[4, 4])  # the image's own size: no resampling
    got = prepare([image], pre, (3, 2, 2), Path.cwd())
    want = np.empty((1, 3, 2, 2))
    for c, source in enumerate([2, 1, 0]):  # BGR from RGB
        for y in range(2):
            for x in range(2):
                want[0, c, y, x] = (image[1 + y, 1 + x, source] * 255 - [10, 20, 30][c]) * 0.5
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_prepare_resizes_before_the_crop():
    image = np.full((10, 20, 1), 0.5, np.float32)
    pre = Preprocess(channel_order="GRAY", raw_scale=2, resize=[8, 8])
    np.testing.assert_allclose(prepare([image], pre, (1, 6, 6), Path.cwd()), np.ones((1, 1, 6, 6)))


def test_prepare_errors():
    from trainnet.errors import TrainnetError

    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(TrainnetError, match="channel_order GRAY does not fit an input of 3 channels"):
        prepare([image], Preprocess(channel_order="GRAY"), (3, 8, 8), Path.cwd())
    with pytest.raises(TrainnetError, match="resize 4x4 is smaller than the input 8x8"):
        prepare([image], Preprocess(resize=[4, 4]), (3, 8, 8), Path.cwd())
    with pytest.raises(TrainnetError, match="2 values for 3 channels"):
        prepare([image], Preprocess(mean_value=[1, 2]), (3, 8, 8), Path.cwd())


def test_read_labels_drops_wordnet_ids(tmp_path):
    (tmp_path / "l.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\nplain name\n")
    assert read_labels(tmp_path / "l.txt") == ["tench, Tinca tinca", "goldfish", "plain name"]


def test_imagenet_class_names_are_a_thousand():
    root = data_root()
    path = root / "caffe" / "ilsvrc12" / "synset_words.txt" if root else None
    if path is None or not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("caffe/ilsvrc12/synset_words.txt missing")
        pytest.skip("caffe/ilsvrc12/synset_words.txt not found")
    names = read_labels(path)
    assert len(names) == 1000 and names[0] == "tench, Tinca tinca"


def mnist_digits(mnist_dir: Path, count: int):
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:count]
    with gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:count]
    return images, labels


def test_classify_digits_with_the_caffe_lenet(tmp_path, mnist_dir):
    """PNG digits through `trainnet classify --model zoo:lenet --weights <caffemodel>`."""
    weights = mnist_dir.parent / "caffe" / "lenet" / "lenet_iter_10000.caffemodel"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    images, labels = mnist_digits(mnist_dir, 8)
    paths = []
    for i, digit in enumerate(images):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(digit).save(paths[-1])
    result = CliRunner().invoke(main, ["classify", "--model", "zoo:lenet", "--weights", str(weights),
                                       "--device", "cpu", "--top", "3", *map(str, paths)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 8 * 4
    for i, label in enumerate(labels):
        assert lines[4 * i] == str(paths[i])
        prob, index, name = lines[4 * i + 1].split()
        assert int(index) == label and name == str(label) and float(prob) > 0.9


def test_classify_errors_are_one_line(tmp_path, mnist_dir):
    weights = mnist_dir.parent / "caffe" / "lenet" / "lenet_iter_10000.caffemodel"
    runner = CliRunner()
    result = runner.invoke(main, ["classify", "--model", "zoo:lenet", "--weights", str(weights),
                                  "--device", "cpu", str(tmp_path / "none.png")])
    assert result.exit_code == 1 and result.output == f"error: {tmp_path / 'none.png'}: no such image\n"
    (tmp_path / "bad.png").write_bytes(b"not an image")
    result = runner.invoke(main, ["classify", "--model", "zoo:lenet", "--weights", str(weights),
                                  "--device", "cpu", str(tmp_path / "bad.png")])
    assert result.exit_code == 1 and "not a readable image" in result.output
    net = tmp_path / "net.yaml"
    net.write_text("layer:\n  - {name: data, type: Input, top: data, shape: {dim: [1, 1, 4, 4]}}\n")
    result = runner.invoke(main, ["classify", "--model", str(net), "--weights", str(weights),
                                  "--device", "cpu", str(tmp_path / "bad.png")])
    assert result.exit_code == 1 and "records no preprocessing" in result.output


TINY = """name: tiny
layer:
  - {name: data, type: Input, top: data, shape: {dim: [1, 3, 4, 4]}}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 3}
  - {name: prob, type: Softmax, bottom: ip, top: prob}
"""


def tiny_model(tmp_path, record="preprocess: {channel_order: BGR, raw_scale: 1.0}\n", meta=None):
    """A 3-class net on 4x4 colour images whose class scores follow the channels' order, its
    weights, and a red image: class 0 reads the first channel, class 2 the last."""
    from trainnet.solver.snapshot import save_tensors
    from trainnet.zoo.convert import preprocess_metadata

    (tmp_path / "tiny.yaml").write_text(record + TINY)
    weight = np.zeros((3, 48), np.float32)
    for k in range(3):
        weight[k, 16 * k:16 * (k + 1)] = 1.0
    save_tensors(tmp_path / "tiny.safetensors", {"ip.0": weight, "ip.1": np.zeros(3, np.float32)},
                 {"format": "trainnet-weights", "net": "tiny", **preprocess_metadata(meta)})
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 255
    Image.fromarray(image).save(tmp_path / "red.png")
    return ["classify", "--model", str(tmp_path / "tiny.yaml"), "--weights",
            str(tmp_path / "tiny.safetensors"), "--device", "cpu", "--top", "1",
            str(tmp_path / "red.png")]


def best_class(result) -> int:
    assert result.exit_code == 0, result.output
    return int(result.output.splitlines()[1].split()[1])


def test_classify_options_override_the_model_record(tmp_path):
    """Red is the last channel in BGR (the record) and the first with --channel-order RGB."""
    args = tiny_model(tmp_path)
    runner = CliRunner()
    assert best_class(runner.invoke(main, args)) == 2
    assert best_class(runner.invoke(main, args + ["--channel-order", "RGB"])) == 0
    # a mean on the red channel alone (in the record's BGR order) leaves green and blue ahead
    assert best_class(runner.invoke(main, args + ["--mean-value", "0,0,2"])) in (0, 1)
    result = runner.invoke(main, args + ["--raw-scale", "-1"])
    assert result.exit_code == 1 and "--raw-scale" in result.output


def test_classify_reads_the_weights_record_and_overrides_it(tmp_path):
    from trainnet.netcfg.common import Preprocess

    args = tiny_model(tmp_path, record="", meta=Preprocess(channel_order="RGB", raw_scale=1.0))
    runner = CliRunner()
    assert best_class(runner.invoke(main, args)) == 0
    assert best_class(runner.invoke(main, args + ["--channel-order", "BGR"])) == 2


def test_classify_hints_fit_the_model(tmp_path):
    """An ImageNet model's hints name its own input, never MNIST's gray 28x28."""
    from trainnet.zoo.registry import net_path

    text = net_path("caffenet").read_text()
    body = text[text.index("layer:"):]
    (tmp_path / "caffenet.yaml").write_text(body)
    runner = CliRunner()
    result = runner.invoke(main, ["classify", "--model", str(tmp_path / "caffenet.yaml"), "--weights",
                                  str(tmp_path / "none.caffemodel"), "--device", "cpu", "x.png"])
    assert result.exit_code == 1 and "records no preprocessing" in result.output
    assert "3x227x227" in result.output and "BGR|RGB" in result.output
    unrecorded = result.output
    result = runner.invoke(main, ["classify", "--model", "zoo:caffenet", "--weights",
                                  str(tmp_path / "none.caffemodel"), "--device", "cpu",
                                  "--channel-order", "GRAY", str(tiny_model(tmp_path)[-1])])
    assert result.exit_code == 1 and "3x227x227" in result.output and "BGR or RGB" in result.output
    for output in (unrecorded, result.output):
        assert "mnist" not in output.lower() and "28x28" not in output
    help_text = runner.invoke(main, ["classify", "--help"]).output
    assert "mnist" not in help_text.lower() and "--channel-order" in help_text
