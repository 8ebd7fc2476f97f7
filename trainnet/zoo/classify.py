"""`trainnet classify`: images through a classifier, prepared as the model's record says.

Images are read with Pillow into [0, 1] RGB (or gray), then prepared as pycaffe's Transformer
and Caffe's classification example do: resize (to ``preprocess.resize``, else to the input
size; bilinear), centre crop to the net's input size, reorder channels, times ``raw_scale``,
minus the mean (``mean_value``, or the per-channel mean of ``mean_file`` as Caffe's
cpp_classification takes it), times ``input_scale``.  The record is the net's ``preprocess:``
section, else the weights' metadata (``trainnet convert`` writes both), unless the caller
gives one.  A net with no record at all is refused: its inputs would be a guess.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from trainnet.data.paths import resolve_data_path
from trainnet.errors import TrainnetError
from trainnet.formats.blobproto import load_mean
from trainnet.formats.limits import read_text, regular_file
from trainnet.netcfg import NetConfig
from trainnet.netcfg.common import Preprocess
from trainnet.plan import compile_net
from trainnet.runtime.locate import locate_nonfinite
from trainnet.runtime.net import Net
from trainnet.solver.weights import EXACT, load_weights


def load_image(path: Path, gray: bool) -> np.ndarray:
    """An image as float32 (H, W, C) in [0, 1], RGB (or one gray channel).  An image over
    Pillow's decompression-bomb limit (its warning as well as its error) is refused."""
    from PIL import Image, UnidentifiedImageError

    regular_file(Path(path), "image")  # a pipe or a device would block or read for ever
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = img.convert("L" if gray else "RGB")
                return np.asarray(img, np.float32).reshape(img.height, img.width, -1) / 255.0
    except FileNotFoundError:
        raise TrainnetError(f"{path}: no such image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TrainnetError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise TrainnetError(f"{path}: not a readable image ({exc})") from None


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    if image.shape[:2] == (h, w):
        return image
    channels = [Image.fromarray(image[:, :, c]).resize((w, h), Image.BILINEAR)
                for c in range(image.shape[2])]
    return np.stack([np.asarray(c, np.float32) for c in channels], axis=2)


def channel_mean(pre: Preprocess, channels: int, base_dir: Path) -> np.ndarray:
    """The mean to subtract per channel (in the model's channel order)."""
    if pre.mean_file:
        mean = load_mean(resolve_data_path(pre.mean_file, base_dir))
        if mean.shape[0] != channels:
            raise TrainnetError(f"{pre.mean_file}: a mean of {mean.shape[0]} channels for an input "
                                f"of {channels}")
        return mean.reshape(channels, -1).mean(axis=1).astype(np.float32)
    if not pre.mean_value:
        return np.zeros(channels, np.float32)
    if len(pre.mean_value) not in (1, channels):
        raise TrainnetError(f"preprocess.mean_value: {len(pre.mean_value)} values for "
                            f"{channels} channels")
    return np.broadcast_to(np.asarray(pre.mean_value, np.float32), (channels,)).copy()


def prepare(images: list[np.ndarray], pre: Preprocess, shape: tuple, base_dir: Path) -> np.ndarray:
    """A batch (N, C, H, W) for an input of ``shape`` (C, H, W)."""
    c, h, w = shape
    if (pre.channel_order == "GRAY") != (c == 1):
        fits = "GRAY" if c == 1 else "BGR or RGB"
        raise TrainnetError(f"preprocess.channel_order {pre.channel_order} does not fit an input of "
                            f"{c} channels (this model's input is {c}x{h}x{w}: --channel-order "
                            f"{fits})")
    mean = channel_mean(pre, c, base_dir)
    batch = np.empty((len(images), c, h, w), np.float32)
    for i, image in enumerate(images):
        rh, rw = pre.resize if pre.resize else (h, w)
        if rh < h or rw < w:
            raise TrainnetError(f"preprocess.resize {rh}x{rw} is smaller than the input {h}x{w}")
        image = _resize(image, rh, rw)
        top, left = (rh - h) // 2, (rw - w) // 2
        image = image[top:top + h, left:left + w].transpose(2, 0, 1)
        if pre.channel_order == "BGR":
            image = image[::-1]
        batch[i] = (image * pre.raw_scale - mean[:, None, None]) * pre.input_scale
    return batch


def with_batch(cfg: NetConfig, n: int) -> tuple[NetConfig, str, tuple]:
    """``cfg`` with its Input layer's batch set to ``n``; the input blob and its (C, H, W)."""
    inputs = [l for l in cfg.layer if l.type == "Input"]
    if len(inputs) != 1 or len(inputs[0].top) != 1 or len(inputs[0].params.shape[0].dim) != 4:
        raise TrainnetError("classify needs a deploy net with one Input layer of one (N, C, H, W) "
                            "blob")
    layer = inputs[0]
    dims = list(layer.params.shape[0].dim)
    shape = layer.params.shape[0].model_copy(update={"dim": [n] + dims[1:]})
    params = layer.params.model_copy(update={"shape": [shape]})
    layers = [l.model_copy(update={"params": params}) if l is layer else l for l in cfg.layer]
    return cfg.model_copy(update={"layer": layers}), layer.top[0], tuple(dims[1:])


def read_labels(path: Path) -> list[str]:
    """Class names, one per line; a leading WordNet id (``n01440764 tench``) is dropped."""
    text = read_text(Path(path), "labels file", limit=2**26)
    names = []
    for line in text.splitlines():
        head, _, rest = line.strip().partition(" ")
        names.append(rest if head[:1] == "n" and head[1:].isdigit() and rest else line.strip())
    return names


def weights_preprocess(weights: Path) -> Optional[Preprocess]:
    """The preprocessing a converted .safetensors file records in its metadata, read from its
    header alone; None for a caffemodel, a file without one, or one that does not parse (loading
    the weights reports a damaged file)."""
    if Path(weights).suffix.lower() != ".safetensors":
        return None
    try:
        with open(weights, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if size > 2**26:
                return None
            meta = json.loads(f.read(size)).get("__metadata__") or {}
        return Preprocess.model_validate(json.loads(meta["preprocess"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def recorded_preprocess(cfg: NetConfig, weights: Path) -> Optional[Preprocess]:
    """What the model records of its input preparation: its YAML's, else its weights'."""
    return cfg.preprocess if cfg.preprocess is not None else weights_preprocess(weights)


def no_record(cfg: NetConfig, shape: tuple) -> TrainnetError:
    """The error for a model without a preprocessing record, with hints for this model's input."""
    c, h, w = shape
    order = "GRAY" if c == 1 else "BGR|RGB"
    zoo = (" (a zoo net's published record: trainnet zoo show NAME)"
           if cfg.file is not None and "zoo" in Path(cfg.file).parts else "")
    return TrainnetError(f"{cfg.file or 'the net'} records no preprocessing, nor do its weights: "
                         f"give the options it was trained with (its input is {c}x{h}x{w}: "
                         f"--channel-order {order}, --raw-scale, --mean-file/--mean-value, "
                         "--input-scale), or add a preprocess section to the YAML" + zoo)


def classify(cfg: NetConfig, weights: Path, images: list[Path], device, *, top: int = 5,
             labels: Optional[str] = None, preprocess: Optional[Preprocess] = None
             ) -> list[list[tuple[float, int, str]]]:
    """Per image, the ``top`` classes as (probability, index, name), most probable first.
    ``preprocess`` replaces the model's record (``recorded_preprocess``) when given."""
    pre = preprocess if preprocess is not None else recorded_preprocess(cfg, weights)
    cfg, blob, shape = with_batch(cfg, len(images))
    if pre is None:
        raise no_record(cfg, shape)
    batch = prepare([load_image(p, shape[0] == 1) for p in images], pre, shape, cfg.base_dir)
    net = Net(compile_net(cfg, "TEST", backward=False, gpu=device.is_gpu), device,
              rng=np.random.default_rng(0), graph=False)
    load_weights(weights, net.params, EXACT)
    net.set_input(blob, batch)
    with np.errstate(all="ignore"):
        net.forward()
    outputs = {k: v for k, v in net.outputs().items() if np.ndim(v) == 2}
    if len(outputs) != 1:
        raise TrainnetError(f"classify needs one (N, classes) output; the net has "
                            f"{', '.join(net.plan.outputs) or 'none'}")
    name, probs = next(iter(outputs.items()))
    if not np.isfinite(probs).all():
        net.set_input(blob, batch)   # the forward-only plan reuses the input's memory
        where = locate_nonfinite(net, backward=False) or f"the output '{name}'"
        raise TrainnetError(f"{weights}: the net's output '{name}' is not finite; the first "
                            f"non-finite blob: {where}")
    label_file = labels or pre.labels
    names = read_labels(resolve_data_path(label_file, cfg.base_dir)) if label_file else []
    if names and len(names) != probs.shape[1]:
        raise TrainnetError(f"{label_file}: {len(names)} class names for {probs.shape[1]} classes")
    result = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:top]
        result.append([(float(row[k]), int(k), names[k] if names else str(k)) for k in order])
    return result
