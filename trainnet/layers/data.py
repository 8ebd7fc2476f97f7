"""Data: batches of images and labels from IDX files (MNIST), with Caffe's transform_param.

Shapes come from the IDX headers at compile time; the arrays are decoded when a Net is built
(``make_state``), once per process per file.  The reader owns its random generator (seeded
from the net's), so shuffling, crops and mirrors are deterministic and ``get_state`` /
``set_state`` resume a run bit-exactly.  ``prefetch`` is accepted; batches are gathered on
the calling thread.  On a GPU the next batch is gathered into pinned memory and uploaded on a
side stream while the device computes on the current one (``StagedReader``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from trainnet.data.idx import read_idx, read_idx_header
from trainnet.data.paths import current_base_dir, resolve_data_path
from trainnet.errors import TrainnetError
from trainnet.layers.base import Layer, StepIO, register
from trainnet.netcfg.common import Strict, TransformationParameter

IMAGES_TAG, LABELS_TAG = "-images-idx3-", "-labels-idx1-"


class DataParams(Strict):
    source: str = Field(min_length=1)   # the images file, e.g. mnist/train-images-idx3-ubyte.gz
    label_source: Optional[str] = None  # default: source with -images-idx3- -> -labels-idx1-
    batch_size: int = Field(ge=1)
    backend: Literal["IDX"] = "IDX"
    shuffle: bool = False
    rand_skip: int = Field(0, ge=0)     # skip a random number of items in [0, rand_skip) at the start
    prefetch: int = Field(4, ge=0)


class DataReader:
    """A cursor over one dataset: fills a batch in place, wraps and reshuffles at epoch ends."""

    def __init__(self, images: np.ndarray, labels: Optional[np.ndarray], batch_size: int, *,
                 rng: np.random.Generator, shuffle: bool = False, skip: int = 0, crop: int = 0,
                 mirror: bool = False, train: bool = True, scale: float = 1.0,
                 mean: Optional[np.ndarray] = None):
        n, c, h, w = images.shape
        self.images, self.labels, self.rng, self.shuffle, self.train = images, labels, rng, shuffle, train
        self.perm = rng.permutation(n) if shuffle else np.arange(n, dtype=np.int64)
        self.cursor, self.epoch = skip % n, 0
        self.idx = np.empty(batch_size, np.int64)
        ch, cw = (crop, crop) if crop else (h, w)
        self.stage = np.empty((batch_size, c, ch, cw), images.dtype)
        self.label_stage = None if labels is None else np.empty(batch_size, labels.dtype)
        self.scale = np.float32(scale)
        # mean: per-channel values, or a (C, H, W) mean image (mean_file) read at each output's
        # source pixel (as Caffe): a crop takes the mean's same window, a mirror flips both
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        if self.mean is not None and self.mean.ndim != 3:
            self.mean = self.mean.reshape(-1, 1, 1)
        self.crop, self.mirror = crop, mirror  # Caffe mirrors at random in either phase
        self.gather = self.mean_window = None
        if crop or self.mirror:  # flat offsets of one item's crop window, plain and flipped
            ci, yi, xi = np.ix_(np.arange(c), np.arange(ch), np.arange(cw))
            self.gather = (ci * h * w + yi * w + xi, ci * h * w + yi * w + (cw - 1 - xi),
                           np.empty(self.stage.shape, np.int64))
            if self.mean is not None and self.mean.shape == (c, h, w):
                self.mean_window = np.empty(self.stage.shape, np.float32)

    def _next_indices(self) -> None:
        n, done = len(self.perm), 0
        while done < len(self.idx):
            k = min(len(self.idx) - done, n - self.cursor)
            self.idx[done:done + k] = self.perm[self.cursor:self.cursor + k]
            done, self.cursor = done + k, self.cursor + k
            if self.cursor == n:
                self.cursor, self.epoch = 0, self.epoch + 1
                if self.shuffle:
                    self.perm = self.rng.permutation(n)

    def _gather_window(self) -> None:
        """Crop (random in TRAIN, centred in TEST) and mirror at random, in one fancy take."""
        b = len(self.idx)
        _, c, h, w = self.images.shape
        ch, cw = self.stage.shape[2:]
        if self.crop and self.train:
            oy, ox = self.rng.integers(0, h - ch + 1, b), self.rng.integers(0, w - cw + 1, b)
        else:
            oy, ox = (h - ch) // 2, (w - cw) // 2
        plain, flipped, sel = self.gather
        np.copyto(sel, plain)
        if self.mirror:
            np.copyto(sel, flipped, where=(self.rng.integers(0, 2, b) == 1)[:, None, None, None])
        sel += np.asarray(oy * w + ox)[..., None, None, None]  # offsets within one image
        if self.mean_window is not None:
            np.take(self.mean.reshape(-1), sel, out=self.mean_window, mode="clip")
        sel += (self.idx * (c * h * w))[:, None, None, None]
        np.take(self.images.reshape(-1), sel, out=self.stage, mode="clip")

    def next_batch(self, data_out: np.ndarray, label_out: Optional[np.ndarray] = None) -> None:
        self._next_indices()
        if self.gather is None:
            np.take(self.images, self.idx, axis=0, out=self.stage, mode="clip")
        else:
            self._gather_window()
        if self.mean is None:
            np.multiply(self.stage, self.scale, out=data_out)
        else:  # Caffe subtracts the mean before scaling
            mean = self.mean if self.mean_window is None else self.mean_window
            np.subtract(self.stage, mean, out=data_out)
            if self.scale != 1:
                data_out *= self.scale
        if label_out is not None:
            np.take(self.labels, self.idx, out=self.label_stage, mode="clip")
            label_out[...] = self.label_stage

    def checkpoint(self) -> tuple:
        """A light record of where the reader stands (the permutation by reference: the reader
        replaces it at an epoch end, never changes it in place); ``state_at`` expands it."""
        return self.cursor, self.epoch, self.perm, self.rng.bit_generator.state

    @staticmethod
    def state_at(checkpoint: tuple) -> dict[str, np.ndarray]:
        cursor, epoch, perm, rng_state = checkpoint
        rng = json.dumps(rng_state).encode()
        return {"cursor": np.array(cursor, np.int64), "epoch": np.array(epoch, np.int64),
                "perm": perm.copy(), "rng": np.frombuffer(rng, np.uint8).copy()}

    def get_state(self) -> dict[str, np.ndarray]:
        return self.state_at(self.checkpoint())

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        n = len(self.perm)
        missing = {"cursor", "epoch", "perm", "rng"} - set(state)
        if missing:
            raise TrainnetError(f"data reader state lacks {', '.join(sorted(missing))}")
        perm = np.asarray(state["perm"], np.int64)
        cursor = int(np.asarray(state["cursor"]).reshape(-1)[0])  # files may store scalars as (1,)
        if perm.shape != (n,) or not np.array_equal(np.bincount(perm, minlength=n), np.ones(n)):
            raise TrainnetError(f"data reader state: perm is not a permutation of {n} items")
        if not 0 <= cursor < n:
            raise TrainnetError(f"data reader state: cursor {cursor} out of range for {n} items")
        try:
            self.rng.bit_generator.state = json.loads(np.asarray(state["rng"], np.uint8).tobytes())
        except (ValueError, TypeError, KeyError) as exc:
            raise TrainnetError(f"data reader state: bad random generator state ({exc})") from None
        self.perm, self.cursor, self.epoch = perm.copy(), cursor, int(np.asarray(state["epoch"]).reshape(-1)[0])


class StagedReader:
    """A reader feeding a GPU: batches gathered on the host overlap the device's compute.

    Two pinned host buffers and two device staging buffers per top, used in turn.  Each
    forward waits (on the device) for the current staging buffer's upload, copies it into the
    tops on the compute stream, then gathers the next batch into the other pinned buffer and
    queues its upload on the side stream, after the device has consumed that staging buffer's
    previous batch.  The reader is thus one batch ahead of what the net has seen; ``get_state``
    reports the reader as of the batches consumed, so a resumed run sees the same sequence.
    """

    def __init__(self, reader: DataReader, shapes: list[tuple[int, ...]], backend):
        self.reader, self.gpu = reader, backend
        self.pinned = [[backend.pinned(s, np.float32) for s in shapes] for _ in range(2)]
        self.staging = [[backend.zeros(s, np.float32) for s in shapes] for _ in range(2)]
        self.ready: list = [None, None]     # side-stream events: staging[i] holds its batch
        self.consumed: list = [None, None]  # compute-stream events: staging[i] copied out
        self.slot = 0
        self.primed = False                 # staging[slot] holds (or will hold) the next batch
        self.consumed_at: Optional[tuple] = None  # the reader's checkpoint after the last batch used

    def _prepare(self, slot: int) -> None:
        """Gather the reader's next batch into pinned[slot] and queue its upload."""
        self.gpu.host_wait(self.ready[slot])  # the previous upload from pinned[slot] has left it
        host = self.pinned[slot]
        self.reader.next_batch(host[0], host[1] if len(host) > 1 else None)
        after = self.consumed[slot]
        for dst, src in zip(self.staging[slot], host):
            self.ready[slot] = self.gpu.upload_side(dst, src, after=after)
            after = None  # the side stream runs its copies in order

    def forward(self, tops: list) -> None:
        gpu = self.gpu
        if not self.primed:
            self._prepare(self.slot)
            self.primed = True
        cur = self.slot
        gpu.wait(self.ready[cur])
        for top, staged in zip(tops, self.staging[cur]):
            gpu.copy(top, staged)
        self.consumed[cur] = gpu.record()
        self.consumed_at = self.reader.checkpoint()
        self.slot = 1 - cur
        self._prepare(self.slot)

    def get_state(self) -> dict[str, np.ndarray]:
        if not self.primed:
            return self.reader.get_state()
        return DataReader.state_at(self.consumed_at)

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.reader.set_state(state)
        self.primed = False  # the batch read ahead belongs to the old position: read it again


@register("Data")
class Data(Layer):
    Params = DataParams
    caffe_params = {"data_param": None}
    num_bottoms = (0, 0)
    num_tops = (1, 2)
    is_data = True
    has_backward = False
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        p = self.p
        tp = getattr(self.common, "transform_param", None) or TransformationParameter()
        self.transform = tp
        if tp.mean_file and tp.mean_value:
            raise self.error("transform_param: give mean_file or mean_value, not both (as in Caffe)")
        if tp.force_color:
            raise self.error("transform_param.force_color: IDX images are stored as they are")
        self.with_labels = len(getattr(self.common, "top", None) or [0, 0]) > 1
        if "base_dir" not in vars(self):
            self.base_dir = current_base_dir()
        images, labels = self._headers()
        n, c, h, w = self.dataset_shape = (images.shape[0],) + self._chw(images.shape)
        if labels is not None and len(labels.shape) != 1:
            raise self.error(f"{labels.path}: labels must be 1-D, got shape {labels.shape}")
        if labels is not None and labels.shape[0] != n:
            raise self.error(f"{images.path} holds {n} images but {labels.path} holds "
                             f"{labels.shape[0]} labels")
        if tp.crop_size > min(h, w):
            raise self.error(f"transform_param.crop_size {tp.crop_size} exceeds the {h}x{w} images")
        if len(tp.mean_value) not in (0, 1, c):
            per_channel = f" or {c} (one per channel)" if c > 1 else ""
            raise self.error(f"transform_param.mean_value: give 1 value{per_channel}, "
                             f"got {len(tp.mean_value)}")
        self.mean_image = self._mean_image((c, h, w)) if tp.mean_file else None
        ch, cw = (tp.crop_size, tp.crop_size) if tp.crop_size else (h, w)
        tops = [(p.batch_size, c, ch, cw)]
        return tops + [(p.batch_size,)] if self.with_labels else tops

    def _mean_image(self, chw: tuple[int, int, int]) -> np.ndarray:
        """transform_param.mean_file: a binaryproto mean of the images' full (C, H, W) size,
        found like the data files."""
        from trainnet.formats.blobproto import load_mean

        try:
            mean = load_mean(resolve_data_path(self.transform.mean_file, self.base_dir))
        except TrainnetError as exc:
            raise self.error(f"transform_param.mean_file: {exc}") from None
        if mean.shape != chw:
            raise self.error(f"transform_param.mean_file {self.transform.mean_file}: the mean has "
                             f"shape {mean.shape} but the images are {chw} (it must be of the "
                             "uncropped image size, as in Caffe)")
        return mean

    def _label_source(self) -> str:
        if self.p.label_source:
            return self.p.label_source
        if IMAGES_TAG not in self.p.source:
            raise self.error(f"label_source: cannot be derived from source '{self.p.source}' (it "
                             f"does not contain '{IMAGES_TAG}'); give label_source, or one top")
        return self.p.source.replace(IMAGES_TAG, LABELS_TAG)

    def _paths(self) -> tuple[Path, Optional[Path]]:
        try:
            images = resolve_data_path(self.p.source, self.base_dir)
            labels = resolve_data_path(self._label_source(), self.base_dir) if self.with_labels else None
        except TrainnetError as exc:
            raise self.error(str(exc)) from None
        return images, labels

    def _headers(self):
        images, labels = self._paths()
        try:
            return read_idx_header(images), labels and read_idx_header(labels)
        except TrainnetError as exc:
            raise self.error(str(exc)) from None

    def _chw(self, shape) -> tuple[int, int, int]:
        if len(shape) == 3:
            return (1,) + tuple(shape[1:])
        if len(shape) == 4:
            return tuple(shape[1:])
        raise self.error(f"{self.p.source}: images must be 3-D (N, H, W) or 4-D (N, C, H, W), "
                         f"got shape {shape}")

    def make_state(self, rng: np.random.Generator, device=None):
        """Decode the files (cached per process) and start a reader seeded from the net's rng;
        on a GPU, wrapped in a ``StagedReader`` with its pinned and staging buffers."""
        images_path, labels_path = self._paths()
        try:
            images = read_idx(images_path)
            labels = read_idx(labels_path) if labels_path else None
        except TrainnetError as exc:
            raise self.error(str(exc)) from None
        images = images.reshape((len(images),) + self._chw(images.shape))
        if images.shape != self.dataset_shape or (labels is not None and labels.shape != images.shape[:1]):
            raise self.error(f"{images_path}: changed since the net was compiled")
        tp = self.transform
        reader_rng = np.random.default_rng(int(rng.integers(2**63)))
        # Caffe skips a random number of items in [0, rand_skip) so that parallel runs differ.
        skip = int(reader_rng.integers(self.p.rand_skip)) if self.p.rand_skip else 0
        reader = DataReader(images, labels, self.p.batch_size, rng=reader_rng,
                            shuffle=self.p.shuffle, skip=skip, crop=tp.crop_size,
                            mirror=tp.mirror, train=self.phase == "TRAIN", scale=tp.scale,
                            mean=self.mean_image if tp.mean_file else
                            np.asarray(tp.mean_value) if tp.mean_value else None)
        if device is None or not device.is_gpu:
            return reader
        return StagedReader(reader, self.top_shapes, device.backend)

    def forward_cpu(self, io: StepIO):
        io.state.next_batch(io.top[0], io.top[1] if len(io.top) > 1 else None)

    def backward_cpu(self, io: StepIO):
        pass

    def forward_gpu(self, io: StepIO):
        """Host work (gather, queue uploads): the Net runs it before the captured graph."""
        io.state.forward(io.top)

    def backward_gpu(self, io: StepIO):
        pass
