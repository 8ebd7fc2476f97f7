"""MNIST and CIFAR-10 as Caffe's example scripts store them: databases of Datum records.

``convert_mnist`` writes what ``create_mnist.sh`` (``convert_mnist_data``) writes:
``mnist_train_<db>`` and ``mnist_test_<db>``, one Datum per image (1 x 28 x 28 pixel bytes,
label) under the key ``%08d`` of its index.  ``convert_cifar10`` writes what
``create_cifar10.sh`` (``convert_cifar_data``, then ``compute_image_mean``) writes:
``cifar10_train_<db>`` (data_batch_1..5 in order, keys ``%05d`` of file index * 10000 + item),
``cifar10_test_<db>`` and ``mean.binaryproto``, one Datum per image (3 x 32 x 32, the pixel
bytes as stored: RGB planes).  The records are byte for byte Caffe's: the Datum fields are
written in field-number order by both protobuf runtimes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from trainnet.data.cifar import read_cifar
from trainnet.data.cifar_download import TEST_FILE, TRAIN_FILES
from trainnet.data.datum import encode_datum
from trainnet.data.db import BACKENDS, create_database
from trainnet.data.idx import read_idx
from trainnet.data.mean import compute_image_mean
from trainnet.data.output import refuse_existing
from trainnet.data.progress import Progress, track
from trainnet.errors import TrainnetError
from trainnet.formats.blobproto import save_blob

MNIST_SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CIFAR_BATCH = 10000  # records per CIFAR-10 batch file
MEAN_FILE = "mean.binaryproto"


def database_name(prefix: str, backend: str) -> str:
    """Caffe's example names: ``mnist_train_lmdb``, ``cifar10_test_leveldb`` ..."""
    backend = backend.upper()
    if backend not in BACKENDS:
        raise TrainnetError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return f"{prefix}_{backend.lower()}"


def write_database(path: Path, backend: str, records: Iterable[tuple[bytes, bytes]], total: int,
                   progress: Optional[Progress] = None) -> int:
    """A new database of ``records`` (key, value) in the given order; returns how many."""
    with create_database(path, backend) as db:
        for key, value in track(records, progress, path.name, total):
            db.put(key, value)
        return db.count


def _records(images: np.ndarray, labels: np.ndarray, key: str) -> Iterator[tuple[bytes, bytes]]:
    """(key % index, Datum) for each (C, H, W) image and its label."""
    for index in range(len(images)):
        yield (key % index).encode(), encode_datum(images[index], int(labels[index]))


def convert_mnist(mnist_dir: Path, out: Path, backend: str = "LMDB",
                  progress: Optional[Progress] = None) -> list[Path]:
    """``out/mnist_train_<db>`` and ``out/mnist_test_<db>`` from the four IDX files."""
    mnist_dir, out = Path(mnist_dir), Path(out)
    outputs = {split: out / database_name(f"mnist_{split}", backend) for split in MNIST_SPLITS}
    refuse_existing(outputs.values())
    for split, (image_file, label_file) in MNIST_SPLITS.items():
        images, labels = read_idx(mnist_dir / image_file), read_idx(mnist_dir / label_file)
        if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1:
            raise TrainnetError(f"{mnist_dir / image_file}: expected N x rows x cols uint8 images "
                                f"and N labels, got {images.shape} {images.dtype} and {labels.shape}")
        if len(images) != len(labels):
            raise TrainnetError(f"{mnist_dir / image_file} holds {len(images)} images but "
                                f"{mnist_dir / label_file} {len(labels)} labels")
        write_database(outputs[split], backend, _records(images[:, None], labels, "%08d"),
                       len(images), progress)
    return list(outputs.values())


def convert_cifar10(cifar_dir: Path, out: Path, backend: str = "LMDB",
                    progress: Optional[Progress] = None) -> list[Path]:
    """``out/cifar10_train_<db>``, ``out/cifar10_test_<db>`` and ``out/mean.binaryproto`` (the
    train database's compute_image_mean) from the binary batches."""
    cifar_dir, out = Path(cifar_dir), Path(out)
    outputs = {split: out / database_name(f"cifar10_{split}", backend) for split in ("train", "test")}
    mean_file = out / MEAN_FILE
    refuse_existing([*outputs.values(), mean_file])
    for split, files in (("train", TRAIN_FILES), ("test", (TEST_FILE,))):
        paths = [cifar_dir / name for name in files]
        images, labels = read_cifar(paths)
        if len(images) != CIFAR_BATCH * len(paths) or images.shape[1:] != (3, 32, 32):
            raise TrainnetError(f"{cifar_dir}: {', '.join(files)} hold {len(images)} images, "
                                f"not {CIFAR_BATCH} CIFAR-10 images per file")
        # file index * 10000 + item is the image's position in the files, in order
        write_database(outputs[split], backend, _records(images, labels, "%05d"), len(images),
                       progress)
    mean = compute_image_mean(outputs["train"], backend, progress)
    save_blob(mean_file, mean, legacy=True)
    return [*outputs.values(), mean_file]


def write_cifar10_mean(cifar_dir: Path) -> Optional[Path]:
    """``cifar_dir/mean.binaryproto`` from the training batches, when it is not there yet: the
    mean create_cifar10.sh computes (and the YAML CIFAR-10 configs read).  Caffe adds uint8
    values into a float32 sum; every partial sum is an integer below 2**24 (50,000 x 255), so an
    exact integer sum turned into float32 is that very sum.  Returns the path written, or None."""
    mean_file = Path(cifar_dir) / MEAN_FILE
    if mean_file.exists():
        return None
    images, _ = read_cifar([Path(cifar_dir) / name for name in TRAIN_FILES])
    if len(images) * 255 >= 2**24:
        raise TrainnetError(f"{cifar_dir}: {len(images)} images are more than an exact float32 sum holds")
    total = images.sum(axis=0, dtype=np.int64).astype(np.float32)
    save_blob(mean_file, total / np.float32(len(images)), legacy=True)
    return mean_file
