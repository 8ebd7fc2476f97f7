"""Caffe's DataTransformer: crop, mirror, mean and scale, applied to batches of images.

Caffe's order, per output pixel: the crop window's source pixel (random offsets in TRAIN,
centred in TEST), read mirrored when the item is mirrored (at random, in either phase), minus
the mean (a mean image read at the same source pixel, or one value per channel), times
``scale``, all in float32.

The random choices of a batch are drawn once, on the reader's thread and in a fixed order
(``draw``), before any item is decoded: each item's result then depends only on its record and
its draws, so batches are the same whatever the number of workers filling them.  Crop offsets
are drawn as fractions of the room an item leaves, so items of different sizes (images
cropped without resizing) need no second draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from trainnet.netcfg.common import TransformationParameter


@dataclass(frozen=True)
class Draws:
    """One batch's random choices: per item, mirrored or not and where the crop starts."""

    mirror: Optional[np.ndarray] = None   # bool (b,)
    crop: Optional[np.ndarray] = None     # float64 (b, 2) in [0, 1): fractions of the room

    def subset(self, lo: int, hi: int) -> "Draws":
        return Draws(None if self.mirror is None else self.mirror[lo:hi],
                     None if self.crop is None else self.crop[lo:hi])


def check_param(tp: TransformationParameter) -> None:
    """The settings that contradict each other, whatever the data (Caffe's CHECKs)."""
    if tp.mean_file and tp.mean_value:
        raise ValueError("transform_param: give mean_file or mean_value, not both (as in Caffe)")
    if tp.force_color and tp.force_gray:
        raise ValueError("transform_param: force_color and force_gray cannot both be set")


class Transformer:
    """The transform of one data layer: ``item_shape`` (C, H, W) is its records' shape
    (the first record's, for sources whose items may differ when cropped)."""

    def __init__(self, tp: TransformationParameter, train: bool, item_shape: tuple[int, int, int],
                 mean_image: Optional[np.ndarray] = None):
        c, h, w = item_shape
        check_param(tp)
        if tp.crop_size > min(h, w):
            raise ValueError(f"transform_param.crop_size {tp.crop_size} exceeds the {h}x{w} images")
        if len(tp.mean_value) not in (0, 1, c):
            per_channel = f" or {c} (one per channel)" if c > 1 else ""
            raise ValueError(f"transform_param.mean_value: give 1 value{per_channel}, got "
                             f"{len(tp.mean_value)}")
        if mean_image is not None and mean_image.shape != (c, h, w):
            raise ValueError(f"transform_param.mean_file {tp.mean_file}: the mean has shape "
                             f"{mean_image.shape} but the images are {(c, h, w)} (it must be of the "
                             "uncropped image size, as in Caffe)")
        self.train, self.crop, self.mirror = train, tp.crop_size, tp.mirror
        self.scale = np.float32(tp.scale)
        self.item_shape = (c, h, w)
        self.out_shape = (c, self.crop, self.crop) if self.crop else (c, h, w)
        self.mean_image = None if mean_image is None else np.asarray(mean_image, np.float32)
        self.mean_values = (np.asarray(tp.mean_value, np.float32).reshape(-1, 1, 1)
                            if tp.mean_value else None)
        self._windows: dict = {}

    @property
    def identity(self) -> bool:
        return (not self.crop and not self.mirror and self.mean_image is None
                and self.mean_values is None and self.scale == 1)

    def draw(self, rng: np.random.Generator, b: int) -> Draws:
        crop = rng.random((b, 2)) if self.crop and self.train else None
        mirror = rng.integers(0, 2, b).astype(bool) if self.mirror else None
        return Draws(mirror, crop)

    def offsets(self, draws: Draws, k: int, h: int, w: int) -> tuple[int, int]:
        """Where item ``k``'s crop starts in an h x w image."""
        if not self.crop:
            return 0, 0
        if draws.crop is None:  # TEST: the centre, as Caffe
            return (h - self.crop) // 2, (w - self.crop) // 2
        fy, fx = draws.crop[k]
        return int(fy * (h - self.crop + 1)), int(fx * (w - self.crop + 1))

    # --- one item at a time (decoded records) ------------------------------------------------
    def apply(self, image: np.ndarray, draws: Draws, k: int, out: np.ndarray) -> None:
        """Transform one CHW image (uint8 or float32, possibly a strided view) into ``out``."""
        c, h, w = image.shape
        oh, ow = out.shape[1:]
        oy, ox = self.offsets(draws, k, h, w)
        flip = draws.mirror is not None and draws.mirror[k]
        window = image[:, oy:oy + oh, ox:ox + ow]
        if flip:
            window = window[:, :, ::-1]
        if self.mean_image is not None:
            mean = self.mean_image[:, oy:oy + oh, ox:ox + ow]
            np.subtract(window, mean[:, :, ::-1] if flip else mean, out=out)
        elif self.mean_values is not None:
            np.subtract(window, self.mean_values, out=out)
        else:
            np.copyto(out, window)
        if self.scale != 1:
            out *= self.scale

    # --- whole batches of an in-memory array -------------------------------------------------
    def apply_batch(self, images: np.ndarray, idx: np.ndarray, draws: Draws, out: np.ndarray) -> None:
        """Items ``idx`` of ``images`` (N, C, H, W) transformed into ``out``, in one gather."""
        n, c, h, w = images.shape
        b = len(idx)
        if not self.crop and draws.mirror is None:
            stage = np.take(images, idx, axis=0)
            mean_window = self.mean_image
        else:
            sel = self._gather_indices(draws, b, h, w)
            if self.mean_image is not None:
                mean_window = np.take(self.mean_image.reshape(-1), sel)
            sel += (idx * (c * h * w))[:, None, None, None]
            stage = np.take(images.reshape(-1), sel)
        mean = mean_window if self.mean_image is not None else self.mean_values
        if mean is None:
            np.multiply(stage, self.scale, out=out)
            return
        np.subtract(stage, mean, out=out)  # Caffe subtracts the mean before scaling
        if self.scale != 1:
            out *= self.scale

    def _gather_indices(self, draws: Draws, b: int, h: int, w: int) -> np.ndarray:
        """Flat offsets within one image of each output pixel of each item."""
        c, oh, ow = self.out_shape
        key = (h, w)
        if key not in self._windows:  # one item's window at (0, 0), plain and flipped
            ci, yi, xi = np.ix_(np.arange(c), np.arange(oh), np.arange(ow))
            self._windows[key] = (ci * h * w + yi * w + xi, ci * h * w + yi * w + (ow - 1 - xi))
        plain, flipped = self._windows[key]
        sel = np.broadcast_to(plain, (b, c, oh, ow)).copy()
        if draws.mirror is not None:
            np.copyto(sel, flipped, where=draws.mirror[:, None, None, None])
        if draws.crop is not None:
            oy = (draws.crop[:, 0] * (h - self.crop + 1)).astype(np.int64)
            ox = (draws.crop[:, 1] * (w - self.crop + 1)).astype(np.int64)
            sel += (oy * w + ox)[:, None, None, None]
        elif self.crop:
            sel += ((h - self.crop) // 2) * w + (w - self.crop) // 2
        return sel
