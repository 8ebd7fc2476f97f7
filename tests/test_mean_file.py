"""Binaryproto blobs and transform_param.mean_file: Caffe's mean files read against independent
references, and the Data layer subtracting the mean image as Caffe's DataTransformer does."""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import data_root
from trainnet.data.idx import write_idx
from trainnet.errors import ConfigError, TrainnetError
from trainnet.layers.base import layer_class
from trainnet.netcfg.common import TransformationParameter
from trainnet.netcfg.net import LayerConfig
from trainnet.formats import caffe_pb
from trainnet.formats.blobproto import load_blob, load_mean, save_blob

CIFAR_MEAN = "cifar10/mean.binaryproto"


def shared(relative: str) -> Path:
    """A file of the shared data folder; skips outside CI when absent, fails under CI=true."""
    root = data_root()
    path = root / relative if root else None
    if path is None or not path.is_file():
        msg = f"{relative} not found: set TRAINNET_DATA to the shared data folder"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


# --- reading blobs -------------------------------------------------------------------------------

def test_cifar10_mean_is_the_training_set_mean():
    """Caffe's compute_image_mean of CIFAR-10's 50000 training images, (1, 3, 32, 32) in the
    files' R, G, B order; recomputed here from the batches themselves."""
    mean = load_mean(shared(CIFAR_MEAN))
    assert mean.shape == (3, 32, 32) and mean.dtype == np.float32
    total = np.zeros(3 * 32 * 32, np.float64)
    for i in range(1, 6):
        records = np.fromfile(shared(f"cifar10/data_batch_{i}.bin"), np.uint8).reshape(10000, 3073)
        total += records[:, 1:].sum(axis=0, dtype=np.float64)
    np.testing.assert_allclose(mean, (total / 50000).reshape(3, 32, 32), atol=1e-3)


def test_imagenet_mean_equals_pycaffe_npy():
    mean = load_mean(shared("caffe/ilsvrc12/imagenet_mean.binaryproto"))
    reference = np.load(shared("caffe/ilsvrc12/ilsvrc_2012_mean.npy"), allow_pickle=False)
    assert mean.shape == reference.shape == (3, 256, 256)
    np.testing.assert_array_equal(mean, reference.astype(np.float32))
    assert load_blob(shared("caffe/ilsvrc12/imagenet_mean.binaryproto")).shape == (1, 3, 256, 256)


def test_save_load_round_trip(tmp_path):
    h = np.arange(9, dtype=np.float32).reshape(3, 3) / 7  # an InfogainLoss H matrix
    save_blob(tmp_path / "h.binaryproto", h)
    np.testing.assert_array_equal(load_blob(tmp_path / "h.binaryproto"), h)
    mean = np.random.default_rng(0).uniform(0, 255, (1, 2, 4, 5)).astype(np.float32)
    save_blob(tmp_path / "m.binaryproto", mean)
    np.testing.assert_array_equal(load_mean(tmp_path / "m.binaryproto"), mean[0])
    save_blob(tmp_path / "m3.binaryproto", mean[0])
    assert load_mean(tmp_path / "m3.binaryproto").shape == (2, 4, 5)


@pytest.mark.parametrize("name, make, message", [
    ("two.binaryproto", lambda p: save_blob(p, np.zeros((2, 1, 2, 2), np.float32)),
     r"holds one image, shape \(1, C, H, W\); this one has shape \(2, 1, 2, 2\)"),
    ("flat.binaryproto", lambda p: save_blob(p, np.zeros((4, 4), np.float32)), "holds one image"),
    ("cut.binaryproto", lambda p: p.write_bytes(save_and_read(p)[:-7]), "truncated or corrupt"),
    ("text.binaryproto", lambda p: p.write_text("mean: 1\n"), "truncated or corrupt|holds no blob"),
    ("none.binaryproto", lambda p: p.write_bytes(b"\x50\x01"), "holds no blob"),
    ("count.binaryproto", lambda p: p.write_bytes(short_blob()), r"shape \(1, 1, 2, 2\) needs 4 values"),
])
def test_bad_mean_files(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(TrainnetError, match=message) as exc:
        load_mean(path)
    assert str(path) in str(exc.value)


def save_and_read(path):
    save_blob(path, np.ones((1, 3, 4, 4), np.float32))
    return path.read_bytes()


def short_blob():
    blob = caffe_pb.BlobProto(num=1, channels=1, height=2, width=2)
    blob.data.extend([1.0, 2.0, 3.0])
    return blob.SerializeToString()


# --- the Data layer --------------------------------------------------------------------------------

N = 6


@pytest.fixture
def rgb_images(tmp_path, monkeypatch):
    """Six random 3x32x32 images (CIFAR's size) as an IDX file; TRAINNET_DATA at the shared data,
    so mean_file resolves like any data path."""
    monkeypatch.setenv("TRAINNET_DATA", str(shared(CIFAR_MEAN).parents[1]))
    images = np.random.default_rng(3).integers(0, 256, (N, 3, 32, 32)).astype(np.uint8)
    path = tmp_path / "rgb-images-idx3-ubyte.gz"
    write_idx(path, images)
    return path, images, load_mean(shared(CIFAR_MEAN)).astype(np.float64)


def data_layer(source, phase="TRAIN", **transform):
    cls = layer_class("Data")
    p = cls.Params.model_validate({"source": str(source), "batch_size": N})
    common = LayerConfig(name="data", type="Data", top=["data"], params=p,
                         transform_param=TransformationParameter(**transform))
    return cls("data", p, phase, [], common=common)


def first_batch(layer, seed=0):
    reader = layer.make_state(np.random.default_rng(seed))
    out = np.empty(layer.top_shapes[0], np.float32)
    reader.next_batch(out)
    return out


def caffe_transform(image, mean, crop, oy, ox, mirror, scale):
    """Caffe's DataTransformer::Transform, element by element: the mean is read at the source
    pixel (the crop's offsets into the full-size mean; a mirror moves both), before scaling."""
    c, h, w = image.shape
    out = np.empty((c, crop, crop))
    for ci in range(c):
        for y in range(crop):
            for x in range(crop):
                sy, sx = oy + y, ox + x
                tx = crop - 1 - x if mirror else x
                out[ci, y, tx] = (float(image[ci, sy, sx]) - mean[ci, sy, sx]) * scale
    return out


def test_mean_file_without_crop(rgb_images):
    source, images, mean = rgb_images
    data = first_batch(data_layer(source, mean_file=CIFAR_MEAN, scale=0.5))
    for i in range(N):
        np.testing.assert_allclose(data[i], caffe_transform(images[i], mean, 32, 0, 0, False, 0.5),
                                   atol=1e-4)


def test_mean_file_with_centre_crop_in_test(rgb_images):
    source, images, mean = rgb_images
    data = first_batch(data_layer(source, "TEST", mean_file=CIFAR_MEAN, crop_size=28, scale=0.25))
    assert data.shape == (N, 3, 28, 28)
    for i in range(N):
        np.testing.assert_allclose(data[i], caffe_transform(images[i], mean, 28, 2, 2, False, 0.25),
                                   atol=1e-4)


def test_mean_file_with_random_crop_and_mirror(rgb_images):
    """Each item equals Caffe's transform for one of the 5x5 offsets and either flip."""
    source, images, mean = rgb_images
    windows = [(oy, ox, f) for oy in range(5) for ox in range(5) for f in (False, True)]
    expected = [[caffe_transform(image, mean, 28, *win, 1.0) for win in windows] for image in images]
    seen = set()
    for seed in range(3):
        data = first_batch(data_layer(source, mean_file=CIFAR_MEAN, crop_size=28, mirror=True), seed)
        for i in range(N):
            match = [win for win, e in zip(windows, expected[i]) if np.allclose(data[i], e, atol=1e-3)]
            assert len(match) == 1, f"item {i}: matches {match}"
            seen.add(match[0])
    assert len({(oy, ox) for oy, ox, _ in seen}) > 3 and {f for *_, f in seen} == {False, True}


def test_mean_file_with_mirror_only(rgb_images):
    source, images, mean = rgb_images
    data = first_batch(data_layer(source, mean_file=CIFAR_MEAN, mirror=True), seed=1)
    flips = []
    for i in range(N):
        plain = caffe_transform(images[i], mean, 32, 0, 0, False, 1.0)
        flipped = caffe_transform(images[i], mean, 32, 0, 0, True, 1.0)
        flips.append(np.allclose(data[i], flipped, atol=1e-3))
        assert flips[-1] or np.allclose(data[i], plain, atol=1e-3)
    assert 0 < sum(flips) < N


@pytest.mark.parametrize("transform, message", [
    ({"mean_file": CIFAR_MEAN, "mean_value": [1, 2, 3]}, "give mean_file or mean_value, not both"),
    ({"mean_file": "cifar10/nothing.binaryproto"}, "transform_param.mean_file: mean file "
                                                   "'cifar10/nothing.binaryproto' not found"),
    ({"mean_file": "caffe/ilsvrc12/imagenet_mean.binaryproto"},
     r"the mean has shape \(3, 256, 256\) but the images are \(3, 32, 32\)"),
    ({"mean_file": "cifar10/batches.meta.txt"}, "truncated or corrupt|holds no blob"),
])
def test_mean_file_errors(rgb_images, transform, message):
    if "imagenet" in transform["mean_file"]:
        shared(transform["mean_file"])
    with pytest.raises(ConfigError, match=r"layer 'data' \(Data\): transform_param") as exc:
        data_layer(rgb_images[0], **transform)
    assert re.search(message, str(exc.value)), str(exc.value)
