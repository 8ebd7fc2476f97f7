"""`trainnet data imageset` and `trainnet data mean` (convert_imageset, compute_image_mean) on
images made here, read back with lmdb/plyvel and a hand-written Datum decoder; the progress
display."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from datum_wire import datum_pixels, decode_datum, legacy_blob_bytes, read_db
from trainnet.cli import main
from trainnet.cli.progress import Reporter
from trainnet.data.datum import encode_datum
from trainnet.data.db import create_database, forget_database
from trainnet.data.imageset import ImagesetOptions, convert_imageset, read_list
from trainnet.data.mean import channel_means, compute_image_mean
from trainnet.data.progress import track
from trainnet.errors import TrainnetError


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def images(tmp_path) -> Path:
    """ROOT with a colour PNG (its name has a space), a JPEG and a grey PNG, and list.txt."""
    root = tmp_path / "root"
    (root / "sub dir").mkdir(parents=True)
    Image.fromarray(rgb(0, 6, 5)).save(root / "sub dir/a b.png")
    Image.fromarray(rgb(1, 6, 5)).save(root / "c.jpg", quality=90)
    Image.fromarray(rgb(2, 6, 5)[..., 0]).save(root / "grey.png")
    (tmp_path / "list.txt").write_text("sub dir/a b.png 3\nc.jpg 7\n\ngrey.png -1\n")
    return root


def convert(tmp_path, root, name="db", backend="LMDB", **kw) -> list[tuple[bytes, dict]]:
    shuffle, seed = kw.pop("shuffle", False), kw.pop("seed", None)
    convert_imageset(tmp_path / "list.txt", root, tmp_path / name, backend, ImagesetOptions(**kw),
                     shuffle=shuffle, seed=seed)
    return [(key, decode_datum(value)) for key, value in read_db(tmp_path / name)]


def bgr_chw(hwc: np.ndarray) -> np.ndarray:
    return hwc[..., ::-1].transpose(2, 0, 1)


# --- lists -------------------------------------------------------------------------------------

def test_list_splits_at_the_last_space(tmp_path):
    (tmp_path / "l.txt").write_text("a b c.jpg 4\r\nd.png 0  \n")
    assert [(e.path, e.label, e.line) for e in read_list(tmp_path / "l.txt")] == [
        ("a b c.jpg", 4, 1), ("d.png", 0, 2)]


@pytest.mark.parametrize("text, message", [
    ("a.jpg 1\nb.jpg\n", r"l.txt:2: expected 'path label', got 'b.jpg'"),
    ("a.jpg 1\nb.jpg cat\n", r"l.txt:2: the label 'cat' \(after the last space\) is not an integer"),
    (" 3\n", r"l.txt:1: expected 'path label'"),
    ("\n\n", r"l.txt: lists no images"),
])
def test_bad_list_lines(tmp_path, text, message):
    (tmp_path / "l.txt").write_text(text)
    with pytest.raises(TrainnetError, match=message):
        read_list(tmp_path / "l.txt")


def test_bad_list_line_from_the_command_line(tmp_path, images):
    (tmp_path / "list.txt").write_text("c.jpg 1\nc.jpg one\n")
    code, out = run("data", "imageset", tmp_path / "list.txt", images, tmp_path / "db")
    assert code == 1 and out.count("\n") == 1 and "list.txt:2: the label 'one'" in out
    assert not (tmp_path / "db").exists()


# --- raw records -------------------------------------------------------------------------------

def test_raw_records_are_bgr_pixels_keyed_by_position(tmp_path, images):
    records = convert(tmp_path, images)
    assert [k for k, _ in records] == [b"00000000_sub dir/a b.png", b"00000001_c.jpg",
                                       b"00000002_grey.png"]
    first, jpeg, grey = (d for _, d in records)
    assert first["order"] == [1, 2, 3, 4, 5]  # Caffe's field order; no encoded flag
    assert (first["label"], jpeg["label"], grey["label"]) == (3, 7, -1)
    np.testing.assert_array_equal(datum_pixels(first), bgr_chw(rgb(0, 6, 5)))
    with Image.open(images / "c.jpg") as img:  # a JPEG is lossy: compare with its own decode
        np.testing.assert_array_equal(datum_pixels(jpeg), bgr_chw(np.asarray(img.convert("RGB"))))
    grey_pixels = rgb(2, 6, 5)[..., 0]  # colour mode: a grey file gives three equal channels
    np.testing.assert_array_equal(datum_pixels(grey), np.stack([grey_pixels] * 3))


def test_gray_and_resize(tmp_path, images):
    records = convert(tmp_path, images, gray=True, resize=(3, 4))
    for _, datum in records:
        assert (datum["channels"], datum["height"], datum["width"]) == (1, 3, 4)
    expected = Image.fromarray(rgb(2, 6, 5)[..., 0]).resize((4, 3), Image.BILINEAR)
    np.testing.assert_array_equal(datum_pixels(records[2][1])[0], np.asarray(expected))


def test_shuffle_is_seeded(tmp_path, images):
    order = [e.path for e in read_list(tmp_path / "list.txt")]
    random.Random(5).shuffle(order)
    records = convert(tmp_path, images, shuffle=True, seed=5)
    assert [k for k, _ in records] == [f"{i:08d}_{p}".encode() for i, p in enumerate(order)]
    assert convert(tmp_path, images, "again", shuffle=True, seed=5) == records


def test_leveldb_backend(tmp_path, images):
    records = convert(tmp_path, images, "db_leveldb", backend="LEVELDB")
    assert (tmp_path / "db_leveldb/CURRENT").is_file() and len(records) == 3
    np.testing.assert_array_equal(datum_pixels(records[0][1]), bgr_chw(rgb(0, 6, 5)))


# --- encoded records ---------------------------------------------------------------------------

def test_encoded_keeps_the_files_own_bytes(tmp_path, images):
    records = convert(tmp_path, images, encoded=True)
    for (_, datum), name in zip(records, ["sub dir/a b.png", "c.jpg", "grey.png"]):
        assert datum["order"] == [4, 5, 7] and datum["encoded"] is True
        assert datum["data"] == (images / name).read_bytes()


def test_encode_type_and_resize_re_encode(tmp_path, images):
    as_jpeg = convert(tmp_path, images, "jpg", encode_type="jpg")
    assert as_jpeg[1][1]["data"] == (images / "c.jpg").read_bytes()  # already a JPEG
    assert as_jpeg[0][1]["data"][:2] == b"\xff\xd8"  # the PNG re-encoded as a JPEG
    resized = convert(tmp_path, images, "resized", encoded=True, resize=(3, 4))
    raw = convert(tmp_path, images, "raw", resize=(3, 4))
    png = resized[0][1]["data"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"  # its own format, re-encoded at the new size
    with Image.open(io.BytesIO(png)) as img:  # PNG is lossless: the raw record's pixels
        np.testing.assert_array_equal(bgr_chw(np.asarray(img)), datum_pixels(raw[0][1]))


# --- bad images --------------------------------------------------------------------------------

def test_missing_and_corrupt_images(tmp_path, images):
    (images / "bad.jpg").write_bytes((images / "c.jpg").read_bytes()[:40])
    (tmp_path / "list.txt").write_text("c.jpg 1\nnope.png 2\nbad.jpg 3\ngrey.png 4\n")
    with pytest.raises(TrainnetError, match=r"list.txt:2: .*nope.png: no such image file"):
        convert(tmp_path, images)
    assert not (tmp_path / "db").exists()
    (tmp_path / "list.txt").write_text("c.jpg 1\nbad.jpg 3\n")
    with pytest.raises(TrainnetError, match=r"list.txt:2: .*bad.jpg: not a readable image"):
        convert(tmp_path, images, "enc", encoded=True)
    (tmp_path / "list.txt").write_text("c.jpg 1\nnope.png 2\nbad.jpg 3\ngrey.png 4\n")
    code, out = run("data", "imageset", "--skip-bad", tmp_path / "list.txt", images, tmp_path / "db")
    assert code == 0, out
    assert "skipped" in out and "nope.png" in out and "bad.jpg" in out
    assert "Processed 4 files." in out and "Wrote 2 records" in out and "skipped 2 bad images" in out
    assert [k for k, _ in read_db(tmp_path / "db")] == [b"00000000_c.jpg", b"00000003_grey.png"]


def test_check_size(tmp_path, images):
    Image.fromarray(rgb(3, 7, 5)).save(images / "tall.png")
    (tmp_path / "list.txt").write_text("c.jpg 1\ngrey.png 2\ntall.png 3\n")
    with pytest.raises(TrainnetError, match=r"list.txt:3: .*tall.png: --check-size: the image is "
                       r"3x7x5, the first one 3x6x5"):
        convert(tmp_path, images, check_size=True)
    assert len(convert(tmp_path, images)) == 3  # without the check, any sizes


def test_refuses_an_existing_output(tmp_path, images):
    convert(tmp_path, images)
    code, out = run("data", "imageset", tmp_path / "list.txt", images, tmp_path / "db")
    assert code == 1 and "db: already exists" in out


# --- mean --------------------------------------------------------------------------------------

def sequential_mean(values: np.ndarray) -> float:
    """Caffe's per-channel mean: a float32 running sum in order, divided by the count."""
    total = np.float32(0)
    for v in values.ravel():
        total = np.float32(total + v)
    return float(total / np.float32(values.size))


def test_mean_of_raw_records_is_caffes_file(tmp_path, images):
    convert(tmp_path, images, resize=(3, 4))
    pixels = [datum_pixels(decode_datum(v)).astype(np.float32) for _, v in read_db(tmp_path / "db")]
    expected = (pixels[0] + pixels[1] + pixels[2]) / np.float32(3)
    code, out = run("data", "mean", tmp_path / "db", tmp_path / "mean.binaryproto")
    assert code == 0, out
    assert (tmp_path / "mean.binaryproto").read_bytes() == legacy_blob_bytes(expected)
    assert "Number of channels: 3" in out and "Processed 3 files." in out
    for c in range(3):
        assert f"mean_value channel [{c}]: {sequential_mean(expected[c]):g}" in out
    code, out = run("data", "mean", tmp_path / "db", tmp_path / "mean.binaryproto")
    assert code == 1 and "already exists" in out


def test_mean_decodes_encoded_records(tmp_path, images):
    (tmp_path / "list.txt").write_text("sub dir/a b.png 0\nc.jpg 1\n")
    convert(tmp_path, images, encoded=True)
    with Image.open(images / "c.jpg") as img:
        jpeg = bgr_chw(np.asarray(img)).astype(np.float32)
    expected = (bgr_chw(rgb(0, 6, 5)).astype(np.float32) + jpeg) / np.float32(2)
    np.testing.assert_array_equal(compute_image_mean(tmp_path / "db"), expected)  # detected
    # an encoded record decodes with its own channels: a grey PNG is one channel
    (tmp_path / "list.txt").write_text("sub dir/a b.png 0\ngrey.png 1\n")
    convert(tmp_path, images, "mixed", encoded=True)
    with pytest.raises(TrainnetError, match=r"record '00000001_grey.png' is 1x6x5 but the first "
                       r"record \('00000000_sub dir/a b.png'\) is 3x6x5"):
        compute_image_mean(tmp_path / "mixed", "lmdb")


def test_mean_of_float_records_and_shape_errors(tmp_path):
    values = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    with create_database(tmp_path / "f", "LEVELDB") as db:
        for i, v in enumerate(values):
            db.put(b"%d" % i, encode_datum(v, i))
    expected = ((values[0] + values[1]) + values[2] + values[3]) / np.float32(4)
    np.testing.assert_array_equal(compute_image_mean(tmp_path / "f", "leveldb"), expected)
    # close the cached LevelDB handle now: plyvel objects left for interpreter shutdown make
    # it print a spurious "Error in sys.excepthook" under pytest
    forget_database(tmp_path / "f")
    with create_database(tmp_path / "e", "LMDB"):
        pass
    with pytest.raises(TrainnetError, match="holds no records"):
        compute_image_mean(tmp_path / "e")
    with pytest.raises(TrainnetError, match="not a database folder"):
        compute_image_mean(tmp_path)


def test_channel_means_sum_in_order_in_float32():
    mean = np.random.default_rng(0).uniform(0, 255, (2, 30, 30)).astype(np.float32)
    assert channel_means(mean) == [sequential_mean(mean[0]), sequential_mean(mean[1])]


# --- progress ----------------------------------------------------------------------------------

def test_plain_progress_lines(capsys):
    reporter = Reporter(every=2, terminal=False)
    for _ in track(range(5), reporter, "db", 5):
        pass
    for _ in track(iter(range(3)), reporter, "more"):  # length unknown until the end
        pass
    reporter("x.tar.gz", 0, 70 << 20, "bytes")
    reporter("x.tar.gz", 40 << 20, 70 << 20, "bytes")
    reporter("x.tar.gz", 70 << 20, 70 << 20, "bytes")
    assert capsys.readouterr().out.splitlines() == [
        "db: 5 files", "Processed 2 files.", "Processed 4 files.", "Processed 5 files.",
        "more:", "Processed 2 files.", "Processed 3 files.",
        "x.tar.gz: 70.0 MB", "Downloaded 40.0 MB.", "Downloaded 70.0 MB."]


def test_tqdm_bar_on_a_terminal(capsys):
    stream = io.StringIO()
    reporter = Reporter(every=2, terminal=True, stream=stream)
    for i in track(range(3), reporter, "mnist_test_lmdb", 3):
        if i == 1:
            reporter.log("a log line")
    assert "mnist_test_lmdb: 100%" in stream.getvalue() and "3/3" in stream.getvalue()
    assert reporter.bar is None  # closed at the end
    assert capsys.readouterr().out == "a log line\n"


def test_plain_lines_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # as if not installed
    reporter = Reporter(every=1, terminal=True, stream=io.StringIO())
    reporter("db", 0, 1, "files")
    reporter("db", 1, 1, "files")
    assert capsys.readouterr().out == "db: 1 files\nProcessed 1 files.\n"
