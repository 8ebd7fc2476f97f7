"""CIFAR-10 as image files and Caffe-style list files, for the ImageData layer.

``OUT/train/<class>/<index>.png`` and ``OUT/test/<class>/<index>.png`` (``index`` the image's
position in its split, five digits), ``OUT/train.txt`` and ``OUT/test.txt`` with one
``path label`` per line (paths relative to OUT, so ``root_folder: OUT/``) in the batches'
order, and ``OUT/labels.txt`` with the class names.  PNG is lossless: decoding a file gives
back exactly the batch's pixels, as an RGB image.  The folder appears complete or not at all.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from trainnet.data.cifar import read_cifar
from trainnet.data.cifar_download import META_FILE, TEST_FILE, TRAIN_FILES
from trainnet.data.output import StagedFolder
from trainnet.data.progress import Progress, track
from trainnet.errors import TrainnetError

CLASSES = 10
PNG_LEVEL = 1  # zlib level: the pixels are the same at any level, and 1 is the fastest


def class_names(meta: Path) -> list[str]:
    """The ten class names of ``batches.meta.txt`` (one a line, then an empty line)."""
    try:
        names = [line.strip() for line in Path(meta).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainnetError(f"{meta}: cannot read the class names ({exc})") from None
    if len(names) != CLASSES or len(set(names)) != CLASSES or any("/" in n for n in names):
        raise TrainnetError(f"{meta}: expected ten distinct class names, one a line; got {names}")
    return names


def _save_png(path: Path, planes: np.ndarray) -> None:
    try:
        Image.fromarray(planes.transpose(1, 2, 0), "RGB").save(path, "PNG", compress_level=PNG_LEVEL)
    except OSError as exc:
        raise TrainnetError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _export_split(folder: Path, split: str, batches: list[Path], names: list[str],
                  progress: Optional[Progress], workers: int) -> int:
    images, labels = read_cifar(batches)
    if images.shape[1:] != (3, 32, 32) or (len(labels) and labels.max() >= CLASSES):
        raise TrainnetError(f"{batches[0].parent}: {', '.join(b.name for b in batches)} are not "
                            "CIFAR-10 batches (3x32x32 images, labels 0-9)")
    for name in names:
        (folder / split / name).mkdir(parents=True)
    paths = [f"{split}/{names[label]}/{index:05d}.png" for index, label in enumerate(labels)]
    with ThreadPoolExecutor(workers) as pool:  # zlib and file writes release the GIL
        done = pool.map(_save_png, [folder / p for p in paths], images, chunksize=64)
        for _ in track(done, progress, f"{split} images", len(paths)):
            pass
    lines = "".join(f"{path} {label}\n" for path, label in zip(paths, labels))
    (folder / f"{split}.txt").write_text(lines)
    return len(paths)


def export_cifar10_images(cifar_dir: Path, out: Path, progress: Optional[Progress] = None,
                          workers: Optional[int] = None) -> dict[str, int]:
    """Write CIFAR-10 from the binary batches in ``cifar_dir`` as PNGs and lists under ``out``;
    returns the image count of each split."""
    cifar_dir = Path(cifar_dir)
    names = class_names(cifar_dir / META_FILE)
    workers = workers or min(8, os.cpu_count() or 1)
    splits = {"train": [cifar_dir / f for f in TRAIN_FILES], "test": [cifar_dir / TEST_FILE]}
    with StagedFolder(Path(out)) as folder:
        counts = {split: _export_split(folder, split, batches, names, progress, workers)
                  for split, batches in splits.items()}
        (folder / "labels.txt").write_text("".join(f"{name}\n" for name in names))
    return counts
