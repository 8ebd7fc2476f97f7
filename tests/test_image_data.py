"""ImageData: list files as Caffe reads them, images decoded as OpenCV would lay them out (BGR
or grey), resized, cropped and mirrored; where relative paths point; bad lines and images named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reader_check import read_batches
from trainnet.data.paths import DataRoot
from trainnet.errors import ConfigError, TrainnetError
from trainnet.layers.base import layer_class
from trainnet.netcfg.common import TransformationParameter
from trainnet.netcfg.net import LayerConfig

RNG = np.random.default_rng(11)
PIXELS = RNG.integers(0, 256, (6, 10, 12, 3), dtype=np.uint8)  # HWC, RGB


@pytest.fixture
def folder(tmp_path):
    """Six PNGs in img/ (one with a space in its name) and list.txt naming them."""
    (tmp_path / "img").mkdir()
    lines = []
    for i, hwc in enumerate(PIXELS):
        name = f"img/photo {i}.png" if i == 3 else f"img/{i}.png"
        Image.fromarray(hwc).save(tmp_path / name)
        lines.append(f"{name} {i * 2}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n\n")
    return tmp_path


def image_layer(folder, phase="TRAIN", transform=None, config="net.yaml", **params):
    cls = layer_class("ImageData")
    p = cls.Params.model_validate({"source": "list.txt", "batch_size": 4, **params})
    common = LayerConfig(name="images", type="ImageData", top=["data", "label"], params=p,
                         transform_param=TransformationParameter(**(transform or {})))
    return cls("images", p, phase, [], common=common, data_root=DataRoot.of(folder / config))


def bgr(hwc):
    return hwc[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)


def test_images_in_list_order_as_bgr(folder):
    layer = image_layer(folder)
    assert layer.top_shapes == [(4, 3, 10, 12), (4,)]
    (data, label), (data2, label2) = read_batches(layer, 2)[0]
    np.testing.assert_array_equal(data, [bgr(PIXELS[i]) for i in range(4)])
    assert label.tolist() == [0, 2, 4, 6] and label2.tolist() == [8, 10, 0, 2]  # wraps


def test_resize_grey_crop_and_mirror(folder):
    layer = image_layer(folder, new_height=8, new_width=6, is_color=False, phase="TEST",
                        transform={"crop_size": 4, "scale": 0.5})
    assert layer.top_shapes[0] == (4, 1, 4, 4)
    (data, _), = read_batches(layer, 1)[0]
    for i in range(4):
        grey = np.asarray(Image.fromarray(PIXELS[i]).convert("L").resize((6, 8), Image.BILINEAR))
        np.testing.assert_array_equal(data[i, 0], grey[2:6, 1:5].astype(np.float32) * 0.5)


def test_shuffle_and_rand_skip(folder):
    got, _ = read_batches(image_layer(folder, shuffle=True, batch_size=6, workers=2), 2, seed=3)
    first, second = (b[1].astype(int).tolist() for b in got)
    assert sorted(first) == sorted(second) == [0, 2, 4, 6, 8, 10] and first != second
    starts = {int(read_batches(image_layer(folder, rand_skip=6, batch_size=1), 1, seed=s)[0][0][1][0])
              for s in range(12)}
    assert len(starts) > 2


def test_relative_paths_yaml_and_prototxt(folder, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)
    assert image_layer(folder).image_root == folder  # YAML: beside the list file
    (elsewhere / "img").mkdir()
    Image.fromarray(PIXELS[1]).save(elsewhere / "img/0.png")
    caffe = image_layer(folder, config="net.prototxt", batch_size=1)  # Caffe: the cwd first
    assert caffe.image_root == elsewhere
    np.testing.assert_array_equal(read_batches(caffe, 1)[0][0][0][0], bgr(PIXELS[1]))
    rooted = image_layer(folder, root_folder=str(folder), config="net.prototxt")
    assert rooted.image_root == folder


def test_sizes_must_match_unless_cropped(folder):
    Image.fromarray(PIXELS[2][:8, :9]).save(folder / "img/2.png")
    with pytest.raises(TrainnetError, match=r"list.txt: line 3: image .*img/2.png: is 8x9, the "
                                            r"first record 10x12"):
        read_batches(image_layer(folder), 1)
    got, _ = read_batches(image_layer(folder, transform={"crop_size": 8}), 1)
    assert got[0][0].shape == (4, 3, 8, 8)


def test_missing_and_corrupt_images(folder):
    (folder / "img/1.png").unlink()
    (folder / "img/4.png").write_bytes(b"not a png")
    with pytest.raises(TrainnetError, match=r"list.txt: line 2: image .*img/1.png: no such file"):
        read_batches(image_layer(folder), 1)
    got, reader = read_batches(image_layer(folder, skip_bad=True, batch_size=6), 1)
    assert got[0][1].tolist() == [0, 4, 4, 6, 10, 10]
    notes = reader.notes()
    assert len(notes) == 2 and "line 2" in notes[0] and "not a readable image" in notes[1]


@pytest.mark.parametrize("text, message", [
    ("img/0.png\n", "list.txt:1: expected 'path label'"),
    ("img/0.png 1\nimg/1.png x\n", "list.txt:2: the label 'x' (after the last space) is not an integer"),
    ("\n\n", "lists no images"),
    ("nowhere.png 1\n", "first entry nowhere.png is in neither"),
])
def test_bad_list_files(folder, text, message):
    (folder / "list.txt").write_text(text)
    with pytest.raises(ConfigError, match="layer 'images' \\(ImageData\\)") as exc:
        image_layer(folder)
    assert message in str(exc.value)


@pytest.mark.parametrize("params, message", [
    ({"new_height": 5}, "new_height and new_width go together"),
    ({"transform": {"force_gray": True}}, "ImageData reads colour or grey by is_color"),
    ({"source": "missing.txt"}, "image list file 'missing.txt' not found"),
])
def test_bad_settings(folder, params, message):
    with pytest.raises(ConfigError, match=message):
        image_layer(folder, **params)


def test_sixteen_bit_images_keep_their_high_byte(folder):
    """As OpenCV reads them in colour or grey; Pillow alone would clip every value to 255."""
    wide = (np.arange(10 * 12, dtype=np.uint16).reshape(10, 12) * 541)
    Image.fromarray(wide).save(folder / "img/0.png")
    for is_color, channels in ((True, 3), (False, 1)):
        layer = image_layer(folder, is_color=is_color, batch_size=1)
        got = read_batches(layer, 1)[0][0][0][0]
        assert got.shape == (channels, 10, 12)
        np.testing.assert_array_equal(got, np.broadcast_to(wide >> 8, got.shape).astype(np.float32))


def test_an_image_too_large_to_decode_is_a_bad_record(folder, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 130)  # Pillow refuses twice that: 260
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "img/2.png")
    layer = image_layer(folder, transform={"crop_size": 8}, skip_bad=True, batch_size=3)
    got, reader = read_batches(layer, 1)
    assert got[0][1].tolist() == [0, 2, 6] and "img/2.png" in reader.notes()[0]
