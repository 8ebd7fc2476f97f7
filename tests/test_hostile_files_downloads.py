"""Hostile mirrors and folders for `trainnet data mnist|cifar10`: a download or an archive
member that never ends is copied no further than the file it should be (plus one byte), and
fails its checksum; a folder where a dataset file belongs is one line; nothing is left behind."""

from __future__ import annotations

import io
import shutil
import tarfile

from hostile import assert_one_error, cli
from trainnet.data.cifar_download import CIFAR10_SHA256, MEMBER_DIR
from trainnet.data.download import MNIST_SHA256, copy_hashed


def test_a_copy_stops_one_byte_past_its_limit():
    out = io.BytesIO()
    with open("/dev/zero", "rb") as endless:
        copy_hashed(endless, out, "zeros", None, limit=1000)
    assert len(out.getvalue()) == 1001


def test_an_endless_mnist_file_from_the_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in MNIST_SHA256:
        (mirror / name).symlink_to("/dev/zero")   # file:// reads it without end
    outcome = cli("data", "mnist", "--dest", tmp_path / "data", "--mirror", mirror.as_uri() + "/")
    assert_one_error(outcome, "train-images-idx3-ubyte.gz: checksum mismatch")
    assert list((tmp_path / "data" / "mnist").iterdir()) == []


def test_a_folder_where_an_mnist_file_belongs(tmp_path, mnist_dir):
    (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").mkdir(parents=True)
    outcome = cli("data", "mnist", "--dest", tmp_path / "data", "--mirror", mnist_dir.as_uri() + "/")
    assert_one_error(outcome, "train-images-idx3-ubyte.gz: cannot be replaced")
    assert not [p for p in (tmp_path / "data" / "mnist").iterdir() if p.name.startswith(".")]


def test_an_archive_member_larger_than_its_file(tmp_path, cifar_dir):
    """batches.meta.txt (61 bytes) as a member of 16 MB: 62 bytes are copied, then refused."""
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    for name in CIFAR10_SHA256:
        if name != "batches.meta.txt":
            (folder / name).symlink_to(cifar_dir / name)
    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo(f"{MEMBER_DIR}/batches.meta.txt")
        info.size = 16 << 20
        with open("/dev/zero", "rb") as zeros:
            tar.addfile(info, zeros)
    outcome = cli("data", "cifar10", "--dest", tmp_path / "data", "--mirror", archive.as_uri())
    assert_one_error(outcome, "batches.meta.txt: checksum mismatch")
    assert not (folder / "batches.meta.txt").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    shutil.rmtree(folder)
