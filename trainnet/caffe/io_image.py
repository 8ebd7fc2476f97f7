"""pycaffe's image helpers (``caffe.io.load_image``, ``resize_image``, ``oversample``) without
scikit-image or SciPy: Pillow decodes, NumPy interpolates.

Images are H x W x K float arrays, as in pycaffe.  The values follow what pycaffe computed with
the scikit-image of its time (before 0.15):

- ``load_image``: ``img_as_float`` scaling (8-bit / 255, 16-bit / 65535), RGB order, a grey
  image tiled to 3 channels for ``color=True``, alpha dropped, and for ``color=False`` a colour
  image turned grey with scikit-image's ``rgb2gray`` weights (0.2125, 0.7154, 0.0721).
- ``resize_image``: for 1 or 3 channels scikit-image's ``resize`` (pixel centres at +0.5, mode
  'constant': samples past the border read 0 in the image's [0, 1]-normalised range, so the
  border blends towards the image's minimum; no anti-aliasing); for any other channel count
  SciPy's ``zoom`` (corners aligned).  Orders 0 (nearest) and 1 (bilinear) only.  Both agree
  with SciPy's ``zoom`` (as scikit-image's ``resize(mode='constant', anti_aliasing=False)`` calls
  it, and plain) to float32 rounding; the tests check that where SciPy is installed.
  scikit-image 0.15 and later changed ``resize``'s defaults (mode 'reflect', Gaussian
  anti-aliasing when shrinking): under those, pycaffe's own results differ from these at the
  border and when shrinking.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

RGB_TO_GREY = np.array([0.2125, 0.7154, 0.0721])  # scikit-image's rgb2gray weights
_SIXTEEN_BITS = ("I;16", "I;16B", "I;16L", "I;16N")


def _grey_palette(img: Image.Image) -> bool:
    palette = np.asarray(img.getpalette() or [], np.uint8).reshape(-1, 3)
    return bool(len(palette)) and bool((palette == palette[:, :1]).all())


def _pixels(img: Image.Image) -> np.ndarray:
    """An opened image as float64 H x W (grey) or H x W x C (RGB, RGBA), scaled to [0, 1] as
    scikit-image's ``img_as_float`` scales the array its Pillow plugin reads."""
    if img.mode in _SIXTEEN_BITS:
        return np.asarray(img).astype(np.float64) / 65535.0
    if img.mode == "F":
        return np.asarray(img).astype(np.float64)
    if img.mode == "I":
        raise ValueError(f"{img.filename or 'image'}: a 32-bit integer image (Pillow mode 'I'); "
                         "load_image reads 8-bit and 16-bit images")
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode == "P":
        img = img.convert("L" if _grey_palette(img) else
                          "RGBA" if "transparency" in img.info else "RGB")
    elif "A" in img.mode or "a" in img.mode:
        img = img.convert("RGBA") if img.mode != "RGBA" else img
    elif img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    return np.asarray(img).astype(np.float64) / 255.0


def load_image(filename, color: bool = True) -> np.ndarray:
    """The image file ``filename`` as float32 in [0, 1]: H x W x 3 in RGB order for ``color``
    (grey images tiled, alpha dropped), else H x W x 1 (colour images turned grey)."""
    with Image.open(filename) as img:
        pixels = _pixels(img)
    if pixels.ndim == 3:
        pixels = pixels[:, :, :3]
        if not color:
            pixels = pixels @ RGB_TO_GREY
    img = pixels.astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    return img


def _taps(n_in: int, n_out: int, order: int, centred: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(source index, weight) pairs giving each output sample along one axis: pixel centres
    mapped with +0.5 offsets (``centred``, scikit-image) or first and last samples aligned
    (SciPy's zoom).  An index outside the axis is a sample of 0 (mode 'constant')."""
    out = np.arange(n_out, dtype=np.float64)
    if centred:
        x = (out + 0.5) * (n_in / n_out) - 0.5
    else:
        x = out * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    if order == 0:  # C's round(): halves away from zero, as scikit-image's nearest
        return [(np.trunc(x + np.copysign(0.5, x)).astype(np.int64), np.ones(n_out))]
    low = np.floor(x)
    frac = x - low
    low = low.astype(np.int64)
    return [(low, 1.0 - frac), (low + 1, frac)]


def _interpolate(a: np.ndarray, axis: int, n_out: int, order: int, centred: bool) -> np.ndarray:
    n_in = a.shape[axis]
    shape = [1] * a.ndim
    shape[axis] = n_out
    out = np.zeros(a.shape[:axis] + (n_out,) + a.shape[axis + 1:], np.float64)
    for index, weight in _taps(n_in, n_out, order, centred):
        inside = (index >= 0) & (index < n_in)
        taken = np.take(a, np.clip(index, 0, n_in - 1), axis=axis)
        out += taken * np.where(inside, weight, 0.0).reshape(shape)
    return out


def resize_image(im: np.ndarray, new_dims: Sequence[int], interp_order: int = 1) -> np.ndarray:
    """``im`` (H x W x K) resized to ``new_dims`` (height, width) as float32, K kept.  With 1 or
    3 channels the image is scaled to [0, 1], resized and scaled back (a constant image stays
    that constant), as pycaffe; see the module's note for the interpolation."""
    im = np.asarray(im)
    height, width = (int(d) for d in new_dims)
    if interp_order not in (0, 1):
        raise ValueError(f"interp_order {interp_order}: resize_image interpolates with order 0 "
                         "(nearest) or 1 (bilinear) only")
    if im.ndim < 2 or min(im.shape[:2]) < 1 or height < 1 or width < 1:
        raise ValueError(f"cannot resize an image of shape {im.shape} to {(height, width)}")
    centred = im.shape[-1] in (1, 3)
    if centred:
        im_min, im_max = im.min(), im.max()
        if not im_max > im_min:
            return np.full((height, width) + im.shape[2:], im_min, np.float32)
        im = (im - im_min) / (im_max - im_min)
    out = _interpolate(im, 0, height, interp_order, centred)
    out = _interpolate(out, 1, width, interp_order, centred)
    if centred:
        out = out * (im_max - im_min) + im_min
    return out.astype(np.float32)


def oversample(images, crop_dims: Sequence[int]) -> np.ndarray:
    """The 10 crops of each H x W x K image, as float32 (10 N, ch, cw, K): the four corners
    (top-left, top-right, bottom-left, bottom-right), the centre, then those five mirrored left
    to right, image after image (pycaffe's order)."""
    crop_h, crop_w = (int(d) for d in crop_dims)
    height, width = np.shape(images[0])[:2]
    if not (0 < crop_h <= height and 0 < crop_w <= width):
        raise ValueError(f"crop {(crop_h, crop_w)} does not fit in images of size "
                         f"{(height, width)}")
    bottom, right = height - crop_h, width - crop_w
    corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    crops = np.empty((10 * len(images), crop_h, crop_w, np.shape(images[0])[-1]), np.float32)
    for n, im in enumerate(images):
        five = crops[10 * n:10 * n + 5]
        for i, (top, left) in enumerate(corners):
            five[i] = im[top:top + crop_h, left:left + crop_w, :]
        crops[10 * n + 5:10 * n + 10] = five[:, :, ::-1, :]
    return crops
