"""trainnet.caffe.io against pycaffe's documented caffe.io behaviour, with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import _dataset
from trainnet.caffe import io
from trainnet.formats import caffe_pb
from trainnet.formats.blobproto import blob_proto

# A 2 x 2 RGB image in [0, 1], pixel (0, 0) = (0.1, 0.2, 0.4).
IMAGE = np.array([[[0.1, 0.2, 0.4], [0.5, 0.6, 0.7]],
                  [[0.0, 1.0, 0.3], [0.9, 0.8, 0.25]]], np.float32)
BGR_MEAN = np.array([10.0, 20.0, 30.0])


def imagenet_transformer(shape=(1, 3, 2, 2), mean=BGR_MEAN, input_scale=0.5):
    t = io.Transformer({"data": shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", mean)
    t.set_input_scale("data", input_scale)
    return t


# --- Transformer -----------------------------------------------------------------------------

def test_preprocess_runs_the_steps_in_pycaffes_order():
    original = IMAGE.copy()
    out = imagenet_transformer().preprocess("data", IMAGE)
    manual = (IMAGE.transpose(2, 0, 1)[[2, 1, 0]] * 255 - BGR_MEAN[:, None, None]) * 0.5
    assert out.dtype == np.float32 and out.shape == (3, 2, 2)
    np.testing.assert_allclose(out, manual, rtol=1e-6)
    # pixel (0, 0): BGR (0.4, 0.2, 0.1) * 255 = (102, 51, 25.5), minus the mean, halved
    np.testing.assert_allclose(out[:, 0, 0], [46.0, 15.5, -2.25], rtol=1e-6)
    np.testing.assert_array_equal(IMAGE, original)  # the caller's image is left alone


def test_preprocess_without_settings_only_converts_and_resizes():
    t = io.Transformer({"data": (1, 3, 2, 2)})
    out = t.preprocess("data", (IMAGE * 255).astype(np.uint8))
    assert out.dtype == np.float32 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out, (IMAGE * 255).astype(np.uint8))


def test_preprocess_resizes_to_the_inputs_height_and_width():
    t = io.Transformer({"data": [1, 3, 4, 4]})  # a list, as some scripts pass
    t.set_transpose("data", (2, 0, 1))
    out = t.preprocess("data", IMAGE)
    assert out.shape == (3, 4, 4)
    np.testing.assert_allclose(out, io.resize_image(IMAGE, (4, 4)).transpose(2, 0, 1))


def test_deprocess_inverts_preprocess():
    t = imagenet_transformer()
    blob = t.preprocess("data", IMAGE)[np.newaxis]  # as a (1, C, H, W) blob
    np.testing.assert_allclose(t.deprocess("data", blob), IMAGE, atol=1e-6)
    t.set_mean("data", np.arange(12, dtype=np.float64).reshape(3, 2, 2))
    np.testing.assert_allclose(t.deprocess("data", t.preprocess("data", IMAGE)), IMAGE, atol=1e-6)


def test_an_unknown_input_is_refused_as_pycaffe_does():
    t = io.Transformer({"data": (1, 3, 2, 2)})
    for call in (lambda: t.preprocess("label", IMAGE), lambda: t.deprocess("label", IMAGE),
                 lambda: t.set_raw_scale("label", 255), lambda: t.set_mean("label", BGR_MEAN),
                 lambda: t.set_transpose("label", (2, 0, 1)),
                 lambda: t.set_channel_swap("label", (2, 1, 0)),
                 lambda: t.set_input_scale("label", 2)):
        with pytest.raises(Exception, match="label is not one of the net inputs"):
            call()


def test_transpose_and_channel_swap_lengths_are_checked():
    t = io.Transformer({"data": (1, 3, 2, 2)})
    with pytest.raises(Exception, match="Transpose order"):
        t.set_transpose("data", (1, 0))
    with pytest.raises(Exception, match="Channel swap"):
        t.set_channel_swap("data", (1, 0))


@pytest.mark.parametrize("mean, message", [
    (np.zeros(4), "Mean channels incompatible"),
    (np.zeros((1, 3, 2, 2)), "Mean shape invalid"),
    (np.zeros((4, 2, 2)), "Mean shape incompatible"),
    (np.zeros((5, 5)), "Mean shape incompatible"),  # one channel, the input has three
])
def test_a_mean_of_the_wrong_shape_is_a_value_error(mean, message):
    with pytest.raises(ValueError, match=message):
        io.Transformer({"data": (1, 3, 2, 2)}).set_mean("data", mean)


def test_mean_shapes():
    t = io.Transformer({"data": (1, 3, 2, 2), "grey": (1, 1, 2, 2)})
    t.set_mean("data", BGR_MEAN)
    assert t.mean["data"].shape == (3, 1, 1)
    t.set_mean("grey", np.ones((2, 2)))  # (H, W) for a one-channel input
    t.set_transpose("grey", (2, 0, 1))
    np.testing.assert_array_equal(t.preprocess("grey", IMAGE[:, :, :1]),
                                  IMAGE[:, :, :1].transpose(2, 0, 1) - 1)


def test_a_mean_image_of_another_size_is_refused_as_pycaffe_does():
    channel = np.arange(16, dtype=np.float64).reshape(4, 4)
    t = io.Transformer({"data": (1, 3, 2, 2)})
    with pytest.raises(ValueError, match=r"the mean is \(3, 4, 4\), the input \(3, 2, 2\) "
                                         r"\(take the mean per channel"):
        t.set_mean("data", np.stack([channel, channel + 100, channel * 2]))


# --- load_image ------------------------------------------------------------------------------

RGB = np.array([[[255, 0, 0], [0, 128, 255]], [[10, 20, 30], [255, 255, 255]]], np.uint8)


def save(tmp_path, array, name):
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return path


def test_load_image_colour_png_is_rgb_in_0_1(tmp_path):
    img = io.load_image(save(tmp_path, RGB, "c.png"))
    assert img.dtype == np.float32 and img.shape == (2, 2, 3)
    np.testing.assert_array_equal(img, (RGB / 255.0).astype(np.float32))
    assert img[0, 1, 1] == np.float32(128 / 255)


def test_load_image_colour_as_grey_uses_rgb2gray_weights(tmp_path):
    img = io.load_image(save(tmp_path, RGB, "c.png"), color=False)
    assert img.shape == (2, 2, 1)
    np.testing.assert_allclose(img[0, 0, 0], 0.2125, rtol=1e-6)  # pure red
    np.testing.assert_allclose(img[0, 1, 0], 0.7154 * 128 / 255 + 0.0721, rtol=1e-6)
    np.testing.assert_allclose(img[1, 1, 0], 1.0, rtol=1e-6)


def test_load_image_grey(tmp_path):
    grey = np.array([[0, 51], [255, 128]], np.uint8)
    path = save(tmp_path, grey, "g.png")
    colour = io.load_image(path)
    assert colour.shape == (2, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(colour[:, :, c], (grey / 255.0).astype(np.float32))
    single = io.load_image(path, color=False)
    assert single.shape == (2, 2, 1) and single[0, 1, 0] == np.float32(0.2)


def test_load_image_drops_alpha(tmp_path):
    rgba = np.concatenate([RGB, np.full((2, 2, 1), 7, np.uint8)], axis=2)
    path = save(tmp_path, rgba, "a.png")
    np.testing.assert_array_equal(io.load_image(path), (RGB / 255.0).astype(np.float32))
    np.testing.assert_allclose(io.load_image(path, color=False)[0, 0, 0], 0.2125, rtol=1e-6)


def test_load_image_palette_and_16_bit(tmp_path):
    grey = np.array([[0, 51], [255, 128]], np.uint8)
    path = tmp_path / "p.png"
    Image.fromarray(grey).convert("P").save(path)
    assert io.load_image(path, color=False)[0, 1, 0] == np.float32(0.2)
    wide = np.array([[0, 1000], [65535, 300]], np.uint16)
    img = io.load_image(save(tmp_path, wide, "w.png"), color=False)
    np.testing.assert_array_equal(img[:, :, 0], (wide / 65535.0).astype(np.float32))


def test_load_image_jpeg(tmp_path):
    path = tmp_path / "c.jpg"
    Image.fromarray(np.repeat(np.repeat(RGB, 8, 0), 8, 1)).save(path, quality=95)
    img = io.load_image(path)
    assert img.shape == (16, 16, 3)
    np.testing.assert_array_equal(img, (np.asarray(Image.open(path)) / 255.0).astype(np.float32))
    assert abs(img[0, 0, 0] - 1.0) < 0.05 and img[0, 0, 1] < 0.05  # still red, RGB order


# --- resize_image ----------------------------------------------------------------------------

# Doubling 2 samples to 4 with pixel centres at +0.5 reads positions -0.25, 0.25, 0.75, 1.25;
# a position past the border blends with 0 in the image's [0, 1]-normalised range (mode
# 'constant'), i.e. with the image's minimum.
DOUBLE = np.array([[0.75, 0], [0.75, 0.25], [0.25, 0.75], [0, 0.75]])
SQUARE = np.array([[0.0, 1.0], [2.0, 3.0]])
SQUARE_DOUBLED = np.array([[0, 0.1875, 0.5625, 0.5625],
                           [0.375, 0.75, 1.25, 1.125],
                           [1.125, 1.75, 2.25, 1.875],
                           [1.125, 1.6875, 2.0625, 1.6875]])


def test_resize_bilinear_by_hand():
    np.testing.assert_allclose(DOUBLE @ SQUARE @ DOUBLE.T, SQUARE_DOUBLED)
    out = io.resize_image(SQUARE[:, :, None], (4, 4))
    assert out.dtype == np.float32 and out.shape == (4, 4, 1)
    np.testing.assert_allclose(out[:, :, 0], SQUARE_DOUBLED, rtol=1e-6)
    shifted = io.resize_image(SQUARE[:, :, None] + 10, (4, 4))  # the border blends to the min
    np.testing.assert_allclose(shifted[:, :, 0], SQUARE_DOUBLED + 10, rtol=1e-6)


def test_resize_three_channels_each_alone():
    im = np.stack([SQUARE, SQUARE * 2, 3 - SQUARE], axis=2)
    out = io.resize_image(im, (4, 4))
    assert out.shape == (4, 4, 3)
    # one min/max for the whole image: the border of each channel blends to 0, the image's min
    np.testing.assert_allclose(out[:, :, 1], SQUARE_DOUBLED * 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, :, 2], DOUBLE @ (3 - SQUARE) @ DOUBLE.T, rtol=1e-6)


def test_resize_down_and_nearest():
    im = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    np.testing.assert_allclose(io.resize_image(im, (2, 2))[:, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    near = io.resize_image(SQUARE[:, :, None], (4, 4), interp_order=0)[:, :, 0]
    np.testing.assert_array_equal(near, [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    # halving reads positions 0.5 and 2.5, which round (away from zero) to 1 and 3
    np.testing.assert_array_equal(io.resize_image(im, (2, 2), interp_order=0)[:, :, 0],
                                  [[5, 7], [13, 15]])


def test_resize_other_channel_counts_align_corners():
    im = np.stack([SQUARE, SQUARE + 5], axis=2)  # 2 channels: pycaffe used scipy's zoom
    out = io.resize_image(im, (3, 3))
    np.testing.assert_allclose(out[:, :, 0], [[0, 0.5, 1], [1, 1.5, 2], [2, 2.5, 3]])
    np.testing.assert_allclose(out[:, :, 1], out[:, :, 0] + 5)


def test_resize_shapes_constants_and_range():
    rng = np.random.default_rng(0)
    im = rng.uniform(3, 7, (5, 7, 3))
    out = io.resize_image(im, (3, 11))
    assert out.shape == (3, 11, 3) and out.dtype == np.float32
    assert 3 <= out.min() and out.max() <= 7
    flat = io.resize_image(np.full((3, 3, 1), 0.25), (5, 2))
    assert flat.shape == (5, 2, 1) and flat.dtype == np.float32 and (flat == 0.25).all()
    with pytest.raises(ValueError, match="order"):
        io.resize_image(im, (2, 2), interp_order=3)


# --- oversample ------------------------------------------------------------------------------

def test_oversample_crops_and_order():
    first = np.arange(20, dtype=np.float32).reshape(4, 5, 1)
    crops = io.oversample([first, first + 100], (2, 3))
    assert crops.shape == (20, 2, 3, 1) and crops.dtype == np.float32
    # corners (0, 0), (0, 2), (2, 0), (2, 2); centre (1, 1) = (4/2 - 2/2, 5/2 - 3/2)
    expected = [first[0:2, 0:3], first[0:2, 2:5], first[2:4, 0:3], first[2:4, 2:5],
                first[1:3, 1:4]]
    expected += [c[:, ::-1] for c in expected]
    np.testing.assert_array_equal(crops[:10], expected)
    np.testing.assert_array_equal(crops[10:], np.array(expected) + 100)
    np.testing.assert_array_equal(crops[4, :, :, 0], [[6, 7, 8], [11, 12, 13]])
    np.testing.assert_array_equal(crops[9, :, :, 0], [[8, 7, 6], [13, 12, 11]])


def test_oversample_centre_of_odd_crops():
    im = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    crops = io.oversample(np.stack([im]), (3, 3))  # pycaffe: int(2 - 1.5) = 0
    np.testing.assert_array_equal(crops[4], im[0:3, 0:3])
    with pytest.raises(ValueError, match="does not fit"):
        io.oversample([im], (5, 3))


# --- BlobProto and Datum ---------------------------------------------------------------------

def test_blobproto_round_trip_with_diff():
    arr = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 4
    blob = io.array_to_blobproto(arr, diff=-arr)
    assert list(blob.shape.dim) == [2, 3, 4] and not blob.HasField("num")
    parsed = caffe_pb.BlobProto.FromString(blob.SerializeToString())
    data = io.blobproto_to_array(parsed)
    assert data.dtype == np.float64 and data.shape == (2, 3, 4)
    np.testing.assert_array_equal(data, arr)
    np.testing.assert_array_equal(io.blobproto_to_array(parsed, return_diff=True), -arr)
    with pytest.raises(ValueError, match="diff"):
        io.array_to_blobproto(arr, diff=np.zeros(3))


def test_blobproto_legacy_4d_fields():
    blob = caffe_pb.BlobProto()
    blob.num, blob.channels, blob.height, blob.width = 1, 1, 10, 10
    blob.data.extend([0.5] * 100)
    assert io.blobproto_to_array(blob).shape == (1, 1, 10, 10)
    legacy = blob_proto(np.arange(6.0).reshape(2, 3), legacy=True)  # compute_image_mean's form
    np.testing.assert_array_equal(io.blobproto_to_array(legacy), np.arange(6.0).reshape(1, 1, 2, 3))


def test_blobproto_without_shape():
    blob = caffe_pb.BlobProto()
    blob.data.append(123)
    arr = io.blobproto_to_array(blob)  # pycaffe: a scalar
    assert arr.shape == () and arr == 123
    blob.data.extend([0] * 99)
    with pytest.raises(ValueError):
        io.blobproto_to_array(blob)


def test_blobproto_from_any_message_with_the_fields():
    class Shape:
        dim = [2, 2]

    class Blob:  # field access only: HasField, data, diff, shape
        shape, data, diff, double_data, double_diff = Shape(), [1.0, 2, 3, 4], [], [], []

        def HasField(self, name):
            return False

    np.testing.assert_array_equal(io.blobproto_to_array(Blob()), [[1, 2], [3, 4]])


def test_blobprotovector_round_trip():
    arrays = [np.ones((2, 3)), np.arange(4.0).reshape(1, 1, 2, 2), np.zeros(0)]
    payload = io.arraylist_to_blobprotovector_str(arrays)
    assert io.arraylist_to_blobprotovecor_str(arrays) == payload  # pycaffe's own spelling
    back = io.blobprotovector_str_to_arraylist(payload)
    assert [a.shape for a in back] == [(2, 3), (1, 1, 2, 2), (0,)]
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)


def test_datum_uint8_and_float():
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    datum = io.array_to_datum(pixels, label=7)
    assert (datum.channels, datum.height, datum.width, datum.label) == (2, 3, 4, 7)
    assert datum.data == pixels.tobytes() and not len(datum.float_data)
    back = io.datum_to_array(caffe_pb.Datum.FromString(datum.SerializeToString()))
    assert back.dtype == np.uint8 and back.flags.writeable
    np.testing.assert_array_equal(back, pixels)
    floats = pixels.astype(np.float64) / 3
    datum = io.array_to_datum(floats)
    assert not datum.data and len(datum.float_data) == 24 and not datum.HasField("label")
    back = io.datum_to_array(datum)
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, floats, rtol=1e-7)


def test_datum_label_and_shape_checks():
    ones = np.ones((3, 10, 10))
    assert (len(io.array_to_datum(ones, label=1).SerializeToString())
            > len(io.array_to_datum(ones).SerializeToString()))
    with pytest.raises(ValueError, match="Incorrect array shape"):
        io.array_to_datum(np.ones((10, 10)))
    with pytest.raises(ValueError, match="Datum"):
        io.datum_to_array(caffe_pb.Datum(channels=1, height=2, width=2, data=b"abc"))


# --- Caffe's example image and ImageNet mean -------------------------------------------------

def test_cat_through_the_imagenet_transformer():
    caffe_dir = _dataset("caffe", "images/cat.jpg", "Caffe's example images")
    cat = io.load_image(caffe_dir / "images/cat.jpg")
    assert cat.shape == (360, 480, 3) and cat.dtype == np.float32
    with Image.open(caffe_dir / "images/cat.jpg") as img:
        np.testing.assert_array_equal(cat, (np.asarray(img) / 255.0).astype(np.float32))
    mean_npy = np.load(caffe_dir / "ilsvrc12/ilsvrc_2012_mean.npy")
    with open(caffe_dir / "ilsvrc12/imagenet_mean.binaryproto", "rb") as f:
        blob = caffe_pb.BlobProto.FromString(f.read())
    mean = io.blobproto_to_array(blob)
    assert mean.shape == (1, 3, 256, 256)  # compute_image_mean's legacy 4-D fields
    np.testing.assert_allclose(mean[0], mean_npy, rtol=1e-6)
    t = imagenet_transformer((10, 3, 227, 227), mean_npy.mean(1).mean(1), 1)
    out = t.preprocess("data", cat)
    resized = io.resize_image(cat, (227, 227))
    manual = resized.transpose(2, 0, 1)[::-1] * 255 - mean_npy.mean(1).mean(1)[:, None, None]
    assert out.shape == (3, 227, 227)
    np.testing.assert_allclose(out, manual, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(t.deprocess("data", out), resized, atol=1e-5)
    with pytest.raises(ValueError, match="Mean shape incompatible"):
        t.set_mean("data", mean_npy)  # the 256 x 256 mean image for a 227 x 227 input


def test_resize_matches_scipy_where_installed():
    """An independent reference: SciPy's zoom, with grid_mode and 'grid-constant' as
    scikit-image's resize(mode='constant', anti_aliasing=False) calls it for 1 or 3 channels,
    and plain (corners aligned) as pycaffe called it for other channel counts."""
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    for shape, new in [((5, 7, 3), (11, 4)), ((9, 6, 1), (4, 13)), ((8, 8, 3), (3, 5)),
                       ((5, 7, 2), (11, 4)), ((9, 6, 4), (4, 13))]:
        im = rng.uniform(0, 1, shape)
        im.flat[0], im.flat[-1] = 0, 1  # [0, 1] already: pycaffe's normalisation is a no-op
        grid = {"grid_mode": True, "mode": "grid-constant"} if shape[2] in (1, 3) else {}
        for order in (0, 1):
            ref = ndimage.zoom(im, (new[0] / shape[0], new[1] / shape[1], 1), order=order, **grid)
            np.testing.assert_allclose(io.resize_image(im, new, order), ref, atol=1e-6)


def test_new_messages_are_caffe_pb2_messages_that_nest():
    from trainnet.caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name="conv1", type="Convolution")
    layer.blobs.extend([io.array_to_blobproto(np.ones((2, 3)), np.zeros((2, 3)))])
    again = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    np.testing.assert_array_equal(io.blobproto_to_array(again.layer[0].blobs[0]), np.ones((2, 3)))
    assert isinstance(io.array_to_datum(np.zeros((1, 2, 2), np.uint8)), caffe_pb2.Datum)
