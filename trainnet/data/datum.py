"""Caffe's Datum records and image files, as NumPy arrays in Caffe's layout.

A Datum holds one image as raw uint8 pixels (``data``, channel-major: C, H, W), as floats
(``float_data``), or as an image file (``encoded``: JPEG, PNG ... as written by
``convert_imageset --encoded``), plus its integer label.  Caffe decodes images with OpenCV, so
colour images are BGR; Pillow decodes here and the channels are reordered to match.  Images
keep their pixel order as stored (no EXIF rotation), as Caffe's OpenCV 2 builds read them.

Decoding returns CHW arrays that may be strided views (an HWC decode transposed; a colour JPEG
decoded in place, its pixels 4 bytes apart as Pillow lays them out), which the transformer reads
directly: no copy is made that the transform would make anyway.
"""

from __future__ import annotations

import io
import os
from typing import Optional

import numpy as np
from google.protobuf.message import DecodeError
from PIL import Image, UnidentifiedImageError

from trainnet.formats import caffe_pb
from trainnet.formats.blobproto import unknown_fields


class RecordError(Exception):
    """A record or image that cannot be read; ``str`` says why (the caller adds where)."""


# How a colour mode maps onto OpenCV's channel layout when decoding "unchanged" (Caffe's
# DecodeDatumToCVMatNative): grey stays one channel, alpha is kept as a fourth.
_NATIVE = {"L": "L", "1": "L", "RGB": "RGB", "RGBA": "RGBA", "LA": "RGBA", "CMYK": "RGB",
           "YCbCr": "RGB", "P": None, "PA": "RGBA"}


def _as_chw(img: Image.Image) -> np.ndarray:
    """An 8-bit Pillow image (L, RGB or RGBA) as a CHW uint8 view, colour channels in BGR(A)."""
    hwc = np.asarray(img)
    if hwc.ndim == 2:
        return hwc[None]
    if img.mode == "RGBA":
        hwc = hwc[..., [2, 1, 0, 3]]
    else:
        hwc = hwc[..., ::-1]
    return hwc.transpose(2, 0, 1)


def decode_image(payload: bytes | str, color: Optional[bool] = None,
                 size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """An image file (bytes, or a path) as CHW uint8: ``color`` True gives 3 channels (BGR),
    False 1 (grey), None the file's own channels (OpenCV's IMREAD_UNCHANGED: grey, BGR or
    BGRA).  ``size`` (height, width) resizes bilinearly, as Caffe's ``new_height/new_width``.
    Raises RecordError for a file Pillow cannot decode or that is not 8-bit."""
    source = io.BytesIO(payload) if isinstance(payload, (bytes, bytearray, memoryview)) else payload
    if source is payload and not os.path.isfile(payload):  # a pipe or a device may never end
        raise RecordError("not a regular file")
    try:
        with Image.open(source) as img:
            if color is not False and size is None:
                rgbx = _decode_rgb_jpeg(img)
                if rgbx is not None:
                    return rgbx[..., 2::-1].transpose(2, 0, 1)
            if color is not None and img.mode in WIDE_GREY:
                img = _to_8_bits(img)
            if color is True:
                img = img.convert("RGB") if img.mode != "RGB" else img  # to its own mode: a copy
            elif color is False:
                img = img.convert("L")
            else:
                img = _native(img)
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            return _as_chw(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as exc:
        raise RecordError(f"not a readable image ({exc})") from None


WIDE_GREY = ("I;16", "I;16B", "I;16L", "I")  # 16-bit grey (PNG, TIFF), as Pillow opens it


def _to_8_bits(img: Image.Image) -> Image.Image:
    """A 16-bit grey image in 8 bits as OpenCV's IMREAD_COLOR/GRAYSCALE read one: the high byte
    of each value (Pillow's own conversion would clip every value above 255 to 255)."""
    wide = np.asarray(img).astype(np.uint32)
    if wide.max(initial=0) > 0xFFFF:
        raise RecordError(f"a {img.mode} image with values above 16 bits")
    return Image.fromarray((wide >> 8).astype(np.uint8), "L")


_MAP_BUFFER = getattr(Image.core, "map_buffer", None)


def _decode_rgb_jpeg(img: Image.Image) -> Optional[np.ndarray]:
    """A colour JPEG not yet decoded, decoded straight into a new (H, W, 4) uint8 array (R, G, B
    and a padding byte), or None for any other image.

    Pillow keeps RGB pixels 4 bytes wide, so an array of that layout can be its image memory
    (as ``Image.frombuffer`` maps one): the decoder writes there, and the two copies that reading
    a decoded image as an array makes (``tobytes`` in chunks, then joined) are not made.  The
    pixels are the decoder's own, unchanged.  Should a Pillow release put its own memory in
    place of the array while loading, that is seen, and the caller reads the image as usual.
    """
    if _MAP_BUFFER is None or img.format != "JPEG" or img.mode != "RGB" or not img.tile:
        return None
    w, h = img.size
    rgbx = np.empty((h, w, 4), np.uint8)
    mapped = _MAP_BUFFER(rgbx, (w, h), "raw", 0, ("RGB", 4 * w, 1))
    img.im = mapped
    img.load()
    return rgbx if img.im is mapped else None


def _native(img: Image.Image) -> Image.Image:
    if img.mode not in _NATIVE:
        raise RecordError(f"a {img.mode} image: Caffe reads 8-bit grey or colour images only")
    mode = _NATIVE[img.mode]
    if mode is None:  # a palette: colour, with alpha when the palette has transparency
        mode = "RGBA" if "transparency" in img.info else "RGB"
    return img.convert(mode) if img.mode != mode else img


def parse_datum(value: bytes):
    """The Datum message of a record; RecordError when the bytes are not one."""
    datum = caffe_pb.Datum()
    try:
        datum.ParseFromString(value)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise RecordError(f"not a Caffe Datum ({exc})") from None
    foreign = unknown_fields(datum)
    if foreign:  # Caffe's Datum has no other fields: a tag a corrupt byte changed
        raise RecordError(f"holds a field (number {foreign[0][0]}) that a Datum has not")
    return datum


def datum_array(datum, force_color: bool = False, force_gray: bool = False) -> np.ndarray:
    """A Datum's image as CHW: uint8 for pixels and encoded images, float32 for float_data.
    ``force_color``/``force_gray`` decode an encoded image in colour or grey (Caffe's
    transform_param fields; they have no effect on raw pixels, as in Caffe)."""
    if datum.encoded:
        color = True if force_color else False if force_gray else None
        return decode_image(datum.data, color)
    shape = (datum.channels, datum.height, datum.width)
    if min(shape) < 0:
        raise RecordError(f"states a negative size {'x'.join(map(str, shape))}")
    count = shape[0] * shape[1] * shape[2]
    if datum.data:
        if len(datum.data) != count:
            raise RecordError(f"holds {len(datum.data)} bytes of pixels but its shape "
                              f"{'x'.join(map(str, shape))} needs {count}")
        return np.frombuffer(datum.data, np.uint8).reshape(shape)
    if len(datum.float_data):
        if len(datum.float_data) != count:
            raise RecordError(f"holds {len(datum.float_data)} float values but its shape "
                              f"{'x'.join(map(str, shape))} needs {count}")
        return np.array(datum.float_data, np.float32).reshape(shape)
    raise RecordError("holds no data (neither pixels, float_data nor an encoded image)")


def encode_datum(image: Optional[np.ndarray], label: int, encoded: Optional[bytes] = None) -> bytes:
    """A serialized Datum: ``image`` CHW (uint8 -> ``data``, floating -> ``float_data``) with
    its shape, or an image file's bytes as ``encoded`` (shape fields left unset, as
    convert_imageset writes them)."""
    datum = caffe_pb.Datum(label=int(label))
    if encoded is not None:
        datum.data = bytes(encoded)
        datum.encoded = True
        return datum.SerializeToString()
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"a Datum holds a C x H x W image, got shape {image.shape}")
    datum.channels, datum.height, datum.width = (int(d) for d in image.shape)
    if image.dtype == np.uint8:
        datum.data = np.ascontiguousarray(image).tobytes()
    else:
        datum.float_data.extend(np.asarray(image, np.float32).reshape(-1).tolist())
    return datum.SerializeToString()
