"""ImageData: images named in a list file (``path label`` per line), with transform_param.

Caffe's ImageDataLayer: a line's path is everything before its last space, its label the integer
after; ``root_folder`` is put before every path; ``new_height``/``new_width`` resize each image
(bilinear) and ``is_color`` reads it in colour (BGR, as OpenCV) or grey.  Without a resize and
without a crop every image must have the first one's size.  ``shuffle`` draws a new order at
each epoch's start; ``rand_skip`` skips a random number of images at the start.

Where relative image paths point: ``root_folder`` (itself found like any data path, and joined
to each path as a folder, where Caffe pastes the two strings together) when given;
otherwise, for a Caffe prototxt, the working directory (as Caffe) then the list file's folder,
and for a YAML config the list file's folder then the working directory.  The first image decides
which base holds them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from trainnet.data.datum import RecordError, decode_image
from trainnet.data.lists import read_list
from trainnet.data.paths import list_base, resolve_data_path
from trainnet.data.pipeline import RecordFeeder
from trainnet.errors import TrainnetError
from trainnet.layers.base import register
from trainnet.layers.data_base import DataLayer
from trainnet.netcfg.common import Strict


class ImageDataParams(Strict):
    source: str = Field(min_length=1)   # the list file
    batch_size: int = Field(1, ge=1)
    rand_skip: int = Field(0, ge=0)
    shuffle: bool = False
    new_height: int = Field(0, ge=0)
    new_width: int = Field(0, ge=0)
    is_color: bool = True
    root_folder: str = ""
    prefetch: int = Field(4, ge=0)      # beyond Caffe's ImageData (its Data layer has it)
    workers: int = Field(1, ge=0)       # threads decoding images; 0: on the calling thread
    skip_bad: bool = False              # skip (and log) unreadable images instead of failing


@register("ImageData")
class ImageData(DataLayer):
    Params = ImageDataParams
    caffe_params = {"image_data_param": None}
    beyond_caffe = ("prefetch", "workers", "skip_bad")
    num_tops = (1, 2)

    def setup(self, bottom_shapes):
        p, tp = self.p, self.transform_param
        if (p.new_height == 0) != (p.new_width == 0):
            raise self.error("new_height and new_width go together (both 0 or both set, as in Caffe)")
        if tp.force_color or tp.force_gray:
            raise self.error("transform_param.force_color/force_gray: ImageData reads colour or grey "
                             "by is_color")
        try:
            self.list_path = resolve_data_path(p.source, self.data_root, what="image list file")
            self.entries = read_list(self.list_path)
            self.image_root = self._image_root()
        except TrainnetError as exc:
            raise self.error(str(exc)) from None
        first = self.entries[0].path
        try:
            image = self._decode(0)
        except RecordError as exc:
            raise self.error(f"{self.list_path}: first image {first}: {exc}") from None
        self.transform = self.transformer(image.shape)
        tops = [(p.batch_size,) + self.transform.out_shape]
        return tops + [(p.batch_size,)] if self.with_labels else tops

    def _image_root(self) -> Path:
        """The folder relative image paths are read from (see the module's docstring)."""
        if self.p.root_folder:
            return resolve_data_path(self.p.root_folder, self.data_root, what="root_folder")
        try:
            return list_base(self.entries[0].path, self.list_path, self.data_root.caffe)
        except TrainnetError as exc:
            raise TrainnetError(f"{exc} (set root_folder to the folder the paths start from)") from None

    def _decode(self, i: int) -> np.ndarray:
        p = self.p
        size = (p.new_height, p.new_width) if p.new_height else None
        path = self.image_root / self.entries[i].path
        if not path.is_file():
            raise RecordError("no such file")
        return decode_image(str(path), color=p.is_color, size=size)

    def make_reader(self, rng):
        entries = self.entries

        def load(i: int) -> tuple[np.ndarray, int]:
            return self._decode(i), entries[i].label

        feeder = RecordFeeder(str(self.list_path), len(entries), load,
                              lambda i: f"line {entries[i].line}: image "
                              f"{self.image_root / entries[i].path}",
                              self.transform, skip_bad=self.p.skip_bad)
        return self.batch_reader(feeder, rng)
