"""Data: batches of images and labels from a dataset, with Caffe's transform_param.

Backends:
- ``LMDB`` and ``LEVELDB``: Caffe's databases of Datum records (raw pixels, float_data, or
  encoded JPEG/PNG), read in key order (Caffe's cursor), wrapping;
- ``IDX``: MNIST's files, read straight from the .gz (``label_source`` defaults to the images
  file with ``-images-idx3-`` replaced by ``-labels-idx1-``);
- ``CIFAR``: CIFAR-10/100's binary batches; ``source`` may be a glob such as
  ``cifar10/data_batch_*.bin`` (the files in sorted order).
With no ``backend`` the source says what it is (a database folder's files, an IDX header, a
CIFAR record size); Caffe's own default, LEVELDB, is what a prototxt without one meant.

Shapes come from the source at compile time (the first record, as Caffe); records are read
when the Net runs, ``prefetch`` batches ahead by ``workers`` threads.  Beyond Caffe: ``shuffle``
(a new seeded order each epoch) and ``skip_bad`` (a corrupt record is skipped and logged
instead of stopping the run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from trainnet.data import cifar
from trainnet.data.datum import RecordError, datum_array, parse_datum
from trainnet.data.db import detect_backend, open_database
from trainnet.data.idx import GZIP_MAGIC, read_idx, read_idx_header
from trainnet.data.paths import resolve_data_glob, resolve_data_path
from trainnet.data.pipeline import ArrayFeeder, RecordFeeder
from trainnet.errors import TrainnetError
from trainnet.layers.base import register
from trainnet.layers.data_base import DataLayer
from trainnet.netcfg.common import Strict

IMAGES_TAG, LABELS_TAG = "-images-idx3-", "-labels-idx1-"
Backend = Literal["LMDB", "LEVELDB", "IDX", "CIFAR"]


class DataParams(Strict):
    source: str = Field(min_length=1)   # a database folder, an IDX file, CIFAR batch files (glob)
    batch_size: int = Field(ge=1)
    backend: Optional[Backend] = None   # None: detected from the source
    rand_skip: int = Field(0, ge=0)     # skip a random number of items in [0, rand_skip) at the start
    prefetch: int = Field(4, ge=0)      # batches read ahead (Caffe's default 4)
    force_encoded_color: bool = False   # decode encoded records in colour (as force_color)
    label_source: Optional[str] = None  # IDX only: the labels file
    shuffle: bool = False               # beyond Caffe: a new order each epoch
    workers: int = Field(1, ge=0)       # threads filling batches; 0: on the calling thread
    skip_bad: bool = False              # skip (and log) unreadable records instead of failing


def _sniff(path: Path) -> Optional[str]:
    """IDX or CIFAR for a file by its content; LMDB or LEVELDB for a database folder.  A file
    that starts as IDX or gzip does (00 00, 1f 8b) but is not read as either is a damaged IDX
    file, and what is wrong with it is the error."""
    if path.is_dir():
        return detect_backend(path)
    try:
        read_idx_header(path)
        return "IDX"
    except TrainnetError as exc:
        idx_error = exc
    try:
        cifar.record_size(path)
        return "CIFAR"
    except TrainnetError:
        pass
    if not path.is_file():  # a pipe or a device: the error says so (opening it could block)
        raise idx_error
    try:
        with open(path, "rb") as f:
            start = f.read(2)
    except OSError:
        return None
    if start in (b"\x00\x00", GZIP_MAGIC):
        raise idx_error
    return None


@register("Data")
class Data(DataLayer):
    Params = DataParams
    caffe_params = {"data_param": None}
    num_tops = (1, 2)
    beyond_caffe = ("label_source", "shuffle", "workers", "skip_bad")

    @classmethod
    def caffe_notes(cls, params):
        notes = super().caffe_notes(params)
        if params.backend is None:
            notes.append("no backend is written (trainnet detects it from the source); Caffe reads "
                         "LEVELDB unless told: set backend")
        elif params.backend in ("IDX", "CIFAR"):
            notes.append(f"backend {params.backend} is trainnet's own: Caffe reads LMDB or LEVELDB "
                         "(`trainnet data mnist|cifar10 --lmdb` makes them)")
        return notes

    def setup(self, bottom_shapes):
        p, tp = self.p, self.transform_param
        if p.label_source and p.backend not in (None, "IDX"):
            raise self.error(f"label_source: only the IDX backend reads labels from a second file; "
                             f"{p.backend} records carry their labels")
        self.backend, self.paths = self._locate()
        if self.backend in ("LMDB", "LEVELDB"):
            item, self.n = self._open_db()
        else:
            if tp.force_color or tp.force_gray or p.force_encoded_color:
                raise self.error(f"transform_param.force_color/force_gray: {self.backend} images are "
                                 "raw pixels, read as stored (they apply to encoded records)")
            item, self.n = self._idx_shape() if self.backend == "IDX" else self._cifar_shape()
        self.transform = self.transformer(item)
        tops = [(p.batch_size,) + self.transform.out_shape]
        return tops + [(p.batch_size,)] if self.with_labels else tops

    # --- the source ----------------------------------------------------------------------
    def _locate(self) -> tuple[str, list[Path]]:
        p = self.p
        hint = ""
        if p.backend is None and self.data_root.caffe:
            hint = "the layer gives no backend, so Caffe would read a LevelDB database there"
        elif p.backend in ("LMDB", "LEVELDB"):
            hint = "`trainnet data mnist|cifar10 --lmdb DIR` and `trainnet data imageset` make them"
        if p.backend == "CIFAR" or (p.backend is None and any(c in p.source for c in "*?[")):
            paths = self._read(resolve_data_glob, p.source, self.data_root, what="CIFAR batch files")
        else:
            what = {"LMDB": "LMDB database", "LEVELDB": "LevelDB database",
                    "IDX": "IDX file"}.get(p.backend, "data source")
            paths = [self._read(resolve_data_path, p.source, self.data_root, what=what, hint=hint)]
        backend = p.backend or self._read(_sniff, paths[0])
        if backend is None:
            kind = "folder" if paths[0].is_dir() else "file"
            raise self.error(f"{paths[0]}: a {kind} that is neither an LMDB or LevelDB database, an "
                             "IDX file nor CIFAR batches; set backend to say what it is")
        return backend, paths

    def _open_db(self) -> tuple[tuple[int, int, int], int]:
        self.db = self._read(open_database, self.paths[0], self.backend)
        first = self.db.first()
        if first is None:
            raise self.error(f"{self.paths[0]}: the {self.backend} database holds no records")
        key, value = first
        try:
            datum = parse_datum(value)
            image = datum_array(datum, *self._force())
        except RecordError as exc:
            raise self.error(f"{self.paths[0]}: first record, key {key!r}: {exc}") from None
        tp = self.transform_param
        if not datum.encoded and (tp.force_color or tp.force_gray or self.p.force_encoded_color):
            raise self.error("transform_param.force_color/force_gray: the records hold raw pixels, "
                             "read as stored (they apply to encoded records)")
        return image.shape, -1  # counted when the net is built (a pass over the keys)

    def _force(self) -> tuple[bool, bool]:
        tp = self.transform_param
        return tp.force_color or self.p.force_encoded_color, tp.force_gray

    def _idx_shape(self) -> tuple[tuple[int, int, int], int]:
        images = self._read(read_idx_header, self.paths[0])
        if self.with_labels:
            self.paths.append(self._label_path())
            labels = self._read(read_idx_header, self.paths[1])
            if len(labels.shape) != 1:
                raise self.error(f"{labels.path}: labels must be 1-D, got shape {labels.shape}")
            if labels.shape[0] != images.shape[0]:
                raise self.error(f"{images.path} holds {images.shape[0]} images but {labels.path} "
                                 f"holds {labels.shape[0]} labels")
        return self._chw(images.shape), images.shape[0]

    def _cifar_shape(self) -> tuple[tuple[int, int, int], int]:
        n = self._read(cifar.count_records, self.paths)
        return (cifar.CHANNELS, cifar.SIDE, cifar.SIDE), n

    def _label_path(self) -> Path:
        source = self.p.label_source
        if not source:
            if IMAGES_TAG not in self.p.source:
                raise self.error(f"label_source: cannot be derived from source '{self.p.source}' "
                                 f"(it does not contain '{IMAGES_TAG}'); give label_source, or one top")
            source = self.p.source.replace(IMAGES_TAG, LABELS_TAG)
        return self._read(resolve_data_path, source, self.data_root, what="IDX labels file")

    def _read(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrainnetError as exc:
            raise self.error(str(exc)) from None

    def _chw(self, shape) -> tuple[int, int, int]:
        if len(shape) == 3:
            return (1,) + tuple(shape[1:])
        if len(shape) == 4:
            return tuple(shape[1:])
        raise self.error(f"{self.p.source}: images must be 3-D (N, H, W) or 4-D (N, C, H, W), "
                         f"got shape {shape}")

    # --- the reader ----------------------------------------------------------------------
    def make_reader(self, rng):
        if self.backend in ("LMDB", "LEVELDB"):
            return self.batch_reader(self._db_feeder(), rng)
        images, labels = self._arrays()
        return self.batch_reader(ArrayFeeder(images, labels, self.transform), rng)

    def _arrays(self) -> tuple[np.ndarray, Optional[np.ndarray]]:
        if self.backend == "CIFAR":
            images, labels = self._read(cifar.read_cifar, self.paths)
        else:
            images = self._read(read_idx, self.paths[0])
            images = images.reshape((len(images),) + self._chw(images.shape))
            labels = self._read(read_idx, self.paths[1]) if len(self.paths) > 1 else None
        if len(images) != self.n or (labels is not None and labels.shape != images.shape[:1]):
            raise self.error(f"{self.paths[0]}: changed since the net was compiled")
        return images, labels

    def _db_feeder(self) -> RecordFeeder:
        db, force = self.db, self._force()
        keys = db.keys
        if not keys:
            raise self.error(f"{self.paths[0]}: the {self.backend} database holds no records")

        def load(i: int) -> tuple[np.ndarray, int]:
            value = db.get(keys[i])
            if value is None:
                raise RecordError("vanished from the database")
            datum = parse_datum(value)
            return datum_array(datum, *force), datum.label

        return RecordFeeder(f"{self.backend} database {self.paths[0]}", len(keys), load,
                            lambda i: f"key {keys[i].decode(errors='replace')!r}", self.transform,
                            skip_bad=self.p.skip_bad)
