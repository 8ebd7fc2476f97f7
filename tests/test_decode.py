"""decode_image: a colour JPEG decoded straight into an array gives Pillow's own pixels."""

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from trainnet.data import datum
from trainnet.data.datum import decode_image


def photo(h=37, w=53, seed=0) -> Image.Image:
    """Smooth colours with noise: what JPEG's chroma subsampling and DCT have to work on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    rgb = rgb + rng.normal(0, 20, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def jpeg(img: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def decoded_in_place(image: np.ndarray) -> bool:
    """Whether the image is a view of a 4-byte-per-pixel array (the JPEG decoded in place)."""
    return isinstance(image.base, np.ndarray) and image.base.shape[-1:] == (4,)


def pillow_reference(payload: bytes, mode: str) -> np.ndarray:
    """CHW as decode_image promises it, through Pillow's ordinary path (BGR for colour)."""
    with Image.open(io.BytesIO(payload)) as img:
        hwc = np.asarray(img.convert(mode))
    return hwc[None] if hwc.ndim == 2 else hwc[..., ::-1].transpose(2, 0, 1)


JPEGS = {
    "baseline 4:2:0": lambda: jpeg(photo()),
    "4:4:4": lambda: jpeg(photo(), subsampling=0),
    "progressive": lambda: jpeg(photo(64, 48, 1), progressive=True),
    "one pixel": lambda: jpeg(photo(1, 1, 2)),
    "256x256": lambda: jpeg(photo(256, 256, 3)),
    "grey": lambda: jpeg(photo().convert("L")),
    "CMYK": lambda: jpeg(photo().convert("CMYK")),
}


@pytest.mark.parametrize("kind", JPEGS)
@pytest.mark.parametrize("color", [True, None, False])
def test_jpeg_pixels_are_pillows(kind, color, tmp_path):
    payload = JPEGS[kind]()
    with Image.open(io.BytesIO(payload)) as img:
        native = {"L": "L", "CMYK": "RGB"}.get(img.mode, img.mode)
    mode = {True: "RGB", False: "L", None: native}[color]
    want = pillow_reference(payload, mode)
    path = tmp_path / "image.jpg"
    path.write_bytes(payload)
    for source in (payload, str(path)):
        got = decode_image(source, color=color)
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert decoded_in_place(got) == (color is not False and kind not in ("grey", "CMYK"))


def test_resized_colour_jpeg_is_pillows():
    payload = jpeg(photo(40, 60))
    with Image.open(io.BytesIO(payload)) as img:
        want = np.asarray(img.convert("RGB").resize((30, 20), Image.BILINEAR))[..., ::-1]
    np.testing.assert_array_equal(decode_image(payload, color=True, size=(20, 30)),
                                  want.transpose(2, 0, 1))


def test_png_takes_the_ordinary_path():
    buffer = io.BytesIO()
    photo().save(buffer, "PNG")
    np.testing.assert_array_equal(decode_image(buffer.getvalue(), color=True),
                                  pillow_reference(buffer.getvalue(), "RGB"))


def test_pillow_replacing_the_memory_is_noticed(monkeypatch):
    """A Pillow that allocates its own image memory while loading: the array is not used."""
    def load_prepare(self):
        self.im = Image.core.new(self.mode, self.size)

    monkeypatch.setattr(ImageFile.ImageFile, "load_prepare", load_prepare)
    payload = jpeg(photo())
    got = decode_image(payload, color=True)
    np.testing.assert_array_equal(got, pillow_reference(payload, "RGB"))
    assert not decoded_in_place(got)


def test_without_map_buffer(monkeypatch):
    monkeypatch.setattr(datum, "_MAP_BUFFER", None)
    payload = jpeg(photo())
    np.testing.assert_array_equal(decode_image(payload, color=None), pillow_reference(payload, "RGB"))


def test_truncated_jpeg_is_a_record_error():
    payload = jpeg(photo(64, 64))
    with pytest.raises(datum.RecordError, match="not a readable image"):
        decode_image(payload[: len(payload) // 2], color=True)
