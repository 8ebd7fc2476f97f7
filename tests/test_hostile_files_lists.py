"""HDF5 data lists and image lists damaged or hostile: one clean line naming the file, bounded
memory, no database left by a failed conversion (the families of test_hostile_files.py, the
training helpers of test_hostile_files_data.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from hostile import assert_one_error, cli
from test_hostile_files import check_family, deadline, peak_bytes, refused
import test_hostile_files_data
from test_hostile_files_data import IMAGES, LABELS, failed_cleanly, train_over
from trainnet.data.datum import RecordError, decode_image
from trainnet.data.hdf5 import HDF5Source, read_file_list
from trainnet.data.lists import read_list
from trainnet.errors import TrainnetError

fresh_caches = test_hostile_files_data.fresh_caches  # a fixture the tests here take


# --- HDF5 data lists ------------------------------------------------------------------------------

def test_hdf5_data_family(tmp_path):
    with h5py.File(tmp_path / "good.h5", "w") as f:
        f["data"], f["label"] = IMAGES.astype(np.float32), LABELS
    check_family(tmp_path, (tmp_path / "good.h5").read_bytes(), ".h5",
                 lambda p: HDF5Source([p], ["data", "label"]).arrays(0),
                 lambda arrays: {k: v.shape for k, v in arrays.items()}, seed=10)


def test_hdf5_data_absurd_sizes_and_lists(tmp_path):
    with h5py.File(tmp_path / "huge.h5", "w") as f:
        f.create_dataset("data", shape=(2**40, 1), dtype="f4", chunks=(4096, 1))
        f["label"] = np.zeros(2**40 // 2**40, np.float32)
    assert "declares shape (1099511627776, 1)" in refused(
        lambda p: HDF5Source([p], ["data", "label"]), tmp_path / "huge.h5")
    assert peak_bytes(lambda: HDF5Source([tmp_path / "huge.h5"], ["data", "label"])) < 2**20
    lists = {"binary.txt": bytes(range(256)), "nul.txt": b"good.h5\x00\n"}
    for name, data in lists.items():
        (tmp_path / name).write_bytes(data)
    refused(read_file_list, tmp_path / "binary.txt")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'huge.h5'}\n")
    layer = f"{{name: d, type: HDF5Data, top: [data, label], source: {tmp_path / 'list.txt'}, batch_size: 2}}"
    failed_cleanly(train_over(tmp_path, layer), tmp_path, "huge.h5", "declares shape")
    (tmp_path / "list.txt").write_text(f"{tmp_path}\n")   # a folder named as an HDF5 file
    failed_cleanly(train_over(tmp_path, layer), tmp_path, str(tmp_path), "a folder")
    os.mkfifo(tmp_path / "pipe")
    with h5py.File(tmp_path / "linked.h5", "w") as f:   # opening the link's target would block
        f["data"], f["label"] = h5py.ExternalLink(str(tmp_path / "pipe"), "/data"), LABELS
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'linked.h5'}\n")
    with deadline(20):
        failed_cleanly(train_over(tmp_path, layer), tmp_path, "linked.h5", "a link into another file")


# --- image lists ---------------------------------------------------------------------------------

def png_bytes(i: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(IMAGES[i]).save(out, "PNG")
    return out.getvalue()


def test_image_family(tmp_path):
    """A PNG cut short is refused, or decodes to the very pixels when only its end marker
    (IEND) is lost."""
    check_family(tmp_path, png_bytes(0), ".png", _decode, lambda a: a.shape, seed=11,
                 cut_ok=lambda got: np.array_equal(got[0], IMAGES[0]))


def _decode(path: Path) -> np.ndarray:
    try:
        return decode_image(str(path), color=False)
    except RecordError as exc:   # as ImageData names it: the list's line and the image
        raise TrainnetError(f"{path}: {exc}") from None


def test_image_lists_and_images_through_train(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(i))
    (tmp_path / "2.png").write_bytes(png_bytes(2)[:60])           # cut short
    (tmp_path / "list.txt").write_text("".join(f"{tmp_path / f'{i}.png'} {i}\n" for i in range(4)))
    layer = (f"{{name: d, type: ImageData, top: [data, label], source: {tmp_path / 'list.txt'}, "
             "batch_size: 2, is_color: false}")
    failed_cleanly(train_over(tmp_path, layer), tmp_path, "line 3", "2.png")
    for data in (b"\xff\xfe" + bytes(range(200)), b"x.png 1\x00\n"):
        (tmp_path / "list.txt").write_bytes(data)
        failed_cleanly(train_over(tmp_path, layer), tmp_path, str(tmp_path / "list.txt"))
    refused(read_list, tmp_path)


def test_data_imageset_over_a_corrupt_image_leaves_no_database(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(i) if i != 1 else b"\x89PNG\r\n\x1a\n" + bytes(30))
    (tmp_path / "list.txt").write_text("".join(f"{i}.png {i}\n" for i in range(3)))
    assert_one_error(cli("data", "imageset", tmp_path / "list.txt", tmp_path, tmp_path / "db"),
                     "1.png")
    assert not (tmp_path / "db").exists() and not list(tmp_path.glob("db*"))
