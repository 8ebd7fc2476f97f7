"""`trainnet data mnist|cifar10`: the CIFAR-10 download from an archive built here (no
network), and the real datasets converted as Caffe's create_mnist.sh / create_cifar10.sh do,
read back with lmdb/plyvel and a hand-written Datum decoder; the CIFAR-10 mean byte for byte
Caffe's own file."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from datum_wire import datum_pixels, decode_datum, read_db
from trainnet.cli import main
from trainnet.data.cifar_download import CIFAR10_SHA256, MEMBER_DIR, download_cifar10
from trainnet.data.cifar_images import export_cifar10_images
from trainnet.data.convert import convert_cifar10, convert_mnist
from trainnet.data.db import forget_database
from trainnet.errors import TrainnetError

RECORD = 3073
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def make_archive(path: Path, members: dict[str, bytes | Path], links=()) -> Path:
    """A .tar.gz (stored, not compressed: quick) of ``members`` (name -> bytes or a file)."""
    with tarfile.open(path, "w:gz", compresslevel=0) as tar:
        for name, source in members.items():
            if isinstance(source, Path):
                tar.add(source, arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


# --- download ----------------------------------------------------------------------------------

def test_cifar10_download_from_an_archive(tmp_path, cifar_dir):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_archive(mirror / "cifar-10-binary.tar.gz", {
        f"{MEMBER_DIR}/readme.html": b"<html></html>",
        **{f"{MEMBER_DIR}/{name}": cifar_dir / name for name in CIFAR10_SHA256},
        "../escaped.bin": b"outside"})
    code, out = run("data", "cifar10", "--dest", tmp_path / "root", "--mirror", mirror.as_uri() + "/")
    assert code == 0, out
    folder = tmp_path / "root/cifar10"
    # the training mean, as create_cifar10.sh makes it: Caffe's own file, byte for byte
    assert (folder / "mean.binaryproto").read_bytes() == (cifar_dir / "mean.binaryproto").read_bytes()
    assert f"Wrote {folder / 'mean.binaryproto'}" in out
    (folder / "mean.binaryproto").unlink()
    assert hashes(folder) == CIFAR10_SHA256  # nothing else, no temp file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o666 & ~umask}
    assert not (tmp_path / "root/escaped.bin").exists() and not (tmp_path / "escaped.bin").exists()
    assert "cifar-10-binary.tar.gz: 175.9 MB" in out and "Downloaded 175.9 MB." in out
    assert f"CIFAR-10 is in {folder} (7 files verified)" in out

    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    code, out = run("data", "cifar10", "--dest", tmp_path / "root", "--mirror", "http://127.0.0.1:9/")
    assert code == 0 and out.count("present, checksum ok") == 7  # verified, not fetched
    (folder / "mean.binaryproto").unlink()

    (folder / "test_batch.bin").unlink()
    (folder / "batches.meta.txt").write_text("wrong\n")
    download_cifar10(folder, mirror=(mirror / "cifar-10-binary.tar.gz").as_uri())
    assert hashes(folder) == CIFAR10_SHA256
    fetched = {"test_batch.bin", "batches.meta.txt"}
    kept = [p for p in folder.iterdir() if p.name not in fetched]
    assert len(kept) == 5 and all(p.stat().st_mtime_ns == stamps[p.name] for p in kept)


@pytest.fixture
def six_present(tmp_path, cifar_dir) -> Path:
    """A cifar10 folder holding every file but batches.meta.txt (links to the real ones)."""
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for name in CIFAR10_SHA256:
        if name != "batches.meta.txt":
            (folder / name).symlink_to(cifar_dir / name)
    return folder


def test_archive_members_never_become_paths(tmp_path, cifar_dir, six_present):
    meta = (cifar_dir / "batches.meta.txt").read_bytes()
    archive = make_archive(tmp_path / "evil.tar.gz", {
        "../batches.meta.txt": meta, f"{MEMBER_DIR}/../batches.meta.txt": meta,
        f"/{MEMBER_DIR}/batches.meta.txt": meta},
        links=[(f"{MEMBER_DIR}/batches.meta.txt", "/etc/passwd")])
    with pytest.raises(TrainnetError, match=f"holds no {MEMBER_DIR}/batches.meta.txt"):
        download_cifar10(six_present, mirror=archive.as_uri())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10", "evil.tar.gz"]
    assert not (six_present / "batches.meta.txt").exists()
    assert not [p for p in six_present.iterdir() if p.name.startswith(".")]


def test_archive_member_with_a_wrong_checksum(tmp_path, six_present):
    archive = make_archive(tmp_path / "a.tar.gz", {f"./{MEMBER_DIR}/batches.meta.txt": b"cat\n"})
    with pytest.raises(TrainnetError, match=f"{MEMBER_DIR}/batches.meta.txt: checksum mismatch"):
        download_cifar10(six_present, mirror=archive.as_uri())
    assert "batches.meta.txt" not in {p.name for p in six_present.iterdir()}
    assert not [p for p in six_present.iterdir() if p.name.startswith(".")]


def test_not_an_archive(tmp_path, six_present):
    (tmp_path / "a.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(TrainnetError, match="not a readable .tar.gz archive"):
        download_cifar10(six_present, mirror=(tmp_path / "a.tar.gz").as_uri())


def test_cifar10_without_network_says_what_to_do(tmp_path):
    code, out = run("data", "cifar10", "--dest", tmp_path, "--mirror", "http://127.0.0.1:9/")
    first, last = out.splitlines()  # what it tried, then one error line
    assert code == 1 and "downloading" in first and last.startswith("error: ")
    out = last
    for words in ("http://127.0.0.1:9/cifar-10-binary.tar.gz failed", "no network",
                  "data_batch_1.bin", "batches.meta.txt", f"{MEMBER_DIR}/", "TRAINNET_DATA"):
        assert words in out
    assert list((tmp_path / "cifar10").iterdir()) == []


# --- MNIST -------------------------------------------------------------------------------------

def read_idx_by_hand(path: Path, header: int) -> np.ndarray:
    return np.frombuffer(gzip.decompress(path.read_bytes())[header:], np.uint8)


def test_mnist_lmdb_as_create_mnist_sh(tmp_path, mnist_dir):
    code, out = run("data", "mnist", "--dest", mnist_dir.parent, "--lmdb", tmp_path)
    assert code == 0, out
    assert "mnist_test_lmdb: 10000 files" in out and "Processed 60000 files." in out
    images = read_idx_by_hand(mnist_dir / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    labels = read_idx_by_hand(mnist_dir / "t10k-labels-idx1-ubyte.gz", 8)
    records = read_db(tmp_path / "mnist_test_lmdb")
    assert [k for k, _ in records] == [b"%08d" % i for i in range(10000)]
    for (_, value), pixels, label in zip(records, images, labels):
        # the whole record, byte for byte what convert_mnist_data writes
        assert value == (b"\x08\x01\x10\x1c\x18\x1c\x22\x90\x06" + pixels.tobytes()
                         + b"\x28" + bytes([label]))
    train = read_db(tmp_path / "mnist_train_lmdb")
    assert len(train) == 60000 and train[-1][0] == b"00059999"
    first = decode_datum(train[0][1])
    assert first["label"] == 5 and datum_pixels(first).shape == (1, 28, 28)
    code, out = run("data", "mnist", "--dest", mnist_dir.parent, "--lmdb", tmp_path)
    assert code == 1 and "mnist_train_lmdb: already exists" in out


def test_mnist_leveldb(tmp_path, mnist_dir):
    outputs = convert_mnist(mnist_dir, tmp_path, "LEVELDB")
    assert [p.name for p in outputs] == ["mnist_train_leveldb", "mnist_test_leveldb"]
    records = read_db(tmp_path / "mnist_test_leveldb")
    images = read_idx_by_hand(mnist_dir / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    assert len(records) == 10000 and records[123][0] == b"00000123"
    np.testing.assert_array_equal(datum_pixels(decode_datum(records[123][1])), images[123])


# --- CIFAR-10 ----------------------------------------------------------------------------------

def test_cifar10_lmdb_and_mean_as_create_cifar10_sh(tmp_path, cifar_dir):
    code, out = run("data", "cifar10", "--dest", cifar_dir.parent, "--lmdb", tmp_path)
    assert code == 0, out
    forget_database(tmp_path / "cifar10_train_lmdb")  # the mean's handle: LMDB opens once a process
    # Caffe's file, byte for byte: Caffe adds each record's uint8 values into float32 sums in
    # key order and divides by the count in float32, and so does trainnet
    mean = (tmp_path / "mean.binaryproto").read_bytes()
    assert mean == (cifar_dir / "mean.binaryproto").read_bytes()
    assert ("mean_value channel [0]: 125.307\nmean_value channel [1]: 122.95\n"
            "mean_value channel [2]: 113.865") in out
    header = b"\x08\x03\x10\x20\x18\x20\x22\x80\x18"  # channels 3, height 32, width 32, data
    for split, files in (("train", [f"data_batch_{i}.bin" for i in range(1, 6)]),
                         ("test", ["test_batch.bin"])):
        raw = b"".join((cifar_dir / name).read_bytes() for name in files)
        records = read_db(tmp_path / f"cifar10_{split}_lmdb")
        assert [k for k, _ in records] == [b"%05d" % i for i in range(len(raw) // RECORD)]
        for index, (_, value) in enumerate(records):
            record = raw[index * RECORD:(index + 1) * RECORD]
            assert value == header + record[1:] + b"\x28" + record[:1]


def truncated_cifar(tmp_path, cifar_dir, count=12) -> Path:
    """The first ``count`` records of each real batch, and the real class names."""
    folder = tmp_path / "small"
    folder.mkdir()
    for name in CIFAR10_SHA256:
        data = (cifar_dir / name).read_bytes()
        (folder / name).write_bytes(data if name.endswith(".txt") else data[:count * RECORD])
    return folder


def test_cifar10_images_and_lists(tmp_path, cifar_dir):
    small = truncated_cifar(tmp_path, cifar_dir)
    assert export_cifar10_images(small, tmp_path / "images", workers=2) == {"train": 60, "test": 12}
    out = tmp_path / "images"
    assert (out / "labels.txt").read_text().split("\n") == CLASSES + [""]
    for split, files in (("train", [f"data_batch_{i}.bin" for i in range(1, 6)]),
                         ("test", ["test_batch.bin"])):
        raw = b"".join((small / name).read_bytes() for name in files)
        lines = (out / f"{split}.txt").read_text().splitlines()
        assert len(lines) == len(raw) // RECORD
        for index, line in enumerate(lines):
            path, label = line.rsplit(" ", 1)
            record = raw[index * RECORD:(index + 1) * RECORD]
            assert int(label) == record[0] and path == f"{split}/{CLASSES[record[0]]}/{index:05d}.png"
            with Image.open(out / path) as img:
                assert img.mode == "RGB"
                planes = np.frombuffer(record[1:], np.uint8).reshape(3, 32, 32)
                np.testing.assert_array_equal(np.asarray(img), planes.transpose(1, 2, 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "small"]  # no staging left
    with pytest.raises(TrainnetError, match="images: already exists"):
        export_cifar10_images(small, out)


def test_cifar10_images_from_the_command_line(tmp_path, cifar_dir, monkeypatch):
    small = truncated_cifar(tmp_path, cifar_dir, count=3)
    # the command verifies the real files first; here it is handed the small copy instead
    monkeypatch.setattr("trainnet.data.cifar_download.download_cifar10", lambda *a, **k: small)
    code, out = run("data", "cifar10", "--images", tmp_path / "png")
    assert code == 0, out
    assert "Wrote 15 train and 3 test images" in out and "Processed 15 files." in out
    assert len((tmp_path / "png/test.txt").read_text().splitlines()) == 3


def test_cifar10_outputs_are_checked_before_any_work(tmp_path, cifar_dir):
    (tmp_path / "cifar10_test_leveldb").mkdir()
    code, out = run("data", "cifar10", "--dest", cifar_dir.parent, "--lmdb", tmp_path,
                    "--backend", "leveldb")
    assert code == 1 and "cifar10_test_leveldb: already exists" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10_test_leveldb"]


def test_cifar10_conversion_wants_whole_batches(tmp_path, cifar_dir):
    with pytest.raises(TrainnetError, match="hold 10 images, not 10000 CIFAR-10 images per file"):
        convert_cifar10(truncated_cifar(tmp_path, cifar_dir, count=2), tmp_path / "out")
