"""The Data layer's backends, read against records written without trainnet: LMDB and LevelDB
of Caffe Datums (raw pixels, float_data, encoded PNG/JPEG) stored by the lmdb and plyvel
packages with a hand-encoded wire format, and CIFAR's binary batches; the backend detected from
the source; missing, mistaken and corrupt sources and records named."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from datum_writer import datum_bytes, write_leveldb, write_lmdb
from reader_check import read_batches
from trainnet.data.db import forget_database
from trainnet.data.paths import DataRoot
from trainnet.errors import ConfigError, TrainnetError
from trainnet.layers.base import layer_class
from trainnet.netcfg.common import TransformationParameter
from trainnet.netcfg.net import LayerConfig

RNG = np.random.default_rng(7)
PIXELS = RNG.integers(0, 256, (7, 3, 5, 6), dtype=np.uint8)
ORDER = [4, 0, 6, 2, 5, 1, 3]  # insertion order: the databases give keys back sorted


def key(i: int) -> bytes:
    return b"%08d" % i


def data_layer(source, phase="TRAIN", tops=("data", "label"), transform=None, config=None, **params):
    cls = layer_class("Data")
    p = cls.Params.model_validate({"source": str(source), "batch_size": 3, **params})
    common = LayerConfig(name="data", type="Data", top=list(tops), params=p,
                         transform_param=TransformationParameter(**(transform or {})))
    return cls("data", p, phase, [], common=common, data_root=DataRoot.of(config))


@pytest.fixture(autouse=True)
def fresh_handles():
    yield
    from trainnet.data import db
    db._close_all()  # a test's databases are its own


def raw_records():
    return [(key(i), datum_bytes(PIXELS[i], label=10 + i)) for i in ORDER]


@pytest.mark.parametrize("writer, backend", [(write_lmdb, "LMDB"), (write_leveldb, "LEVELDB")])
def test_raw_records_in_key_order_wrapping(tmp_path, writer, backend):
    path = writer(tmp_path / "db", raw_records())
    for given in (backend, None):  # stated, and detected from the folder
        layer = data_layer(path, backend=given)
        assert layer.backend == backend and layer.top_shapes == [(3, 3, 5, 6), (3,)]
        got, _ = read_batches(layer, 3)
        for batch, items in zip(got, ([0, 1, 2], [3, 4, 5], [6, 0, 1])):
            np.testing.assert_array_equal(batch[0], PIXELS[items].astype(np.float32))
            np.testing.assert_array_equal(batch[1], [10 + i for i in items])


def test_float_data_and_negative_labels(tmp_path):
    values = RNG.normal(size=(3, 2, 4, 4)).astype(np.float32)
    path = write_lmdb(tmp_path / "f", [(key(i), datum_bytes(values[i], label=-i, floats=True))
                                       for i in range(3)])
    (data, label), = read_batches(data_layer(path, transform={"scale": 2.0}), 1)[0]
    np.testing.assert_array_equal(data, values * np.float32(2))
    np.testing.assert_array_equal(label, [0, -1, -2])


def png(hwc: np.ndarray, mode=None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(hwc, mode).save(out, "PNG")
    return out.getvalue()


def test_encoded_png_is_bgr_pixels(tmp_path):
    hwc = PIXELS.transpose(0, 2, 3, 1)  # as an RGB image
    path = write_lmdb(tmp_path / "png", [(key(i), datum_bytes(label=i, encoded=png(hwc[i])))
                                         for i in range(3)])
    (data, label), = read_batches(data_layer(path), 1)[0]
    np.testing.assert_array_equal(data, PIXELS[:3, ::-1].astype(np.float32))  # RGB -> BGR, as OpenCV
    np.testing.assert_array_equal(label, [0, 1, 2])


def test_encoded_jpeg_as_pillow_decodes_it(tmp_path):
    files = []
    for i in range(3):
        out = io.BytesIO()
        Image.fromarray(PIXELS[i].transpose(1, 2, 0)).save(out, "JPEG", quality=90)
        files.append(out.getvalue())
    path = write_lmdb(tmp_path / "jpg", [(key(i), datum_bytes(label=i, encoded=f))
                                         for i, f in enumerate(files)])
    (data, _), = read_batches(data_layer(path, transform={"mean_value": [1, 2, 3]}), 1)[0]
    for i, f in enumerate(files):
        rgb = np.asarray(Image.open(io.BytesIO(f)).convert("RGB"), np.float32)
        want = rgb[:, :, ::-1].transpose(2, 0, 1) - np.array([1, 2, 3], np.float32)[:, None, None]
        np.testing.assert_array_equal(data[i], want)


def test_grey_and_forced_colour(tmp_path):
    grey = PIXELS[:3, 0]
    path = write_lmdb(tmp_path / "g", [(key(i), datum_bytes(label=i, encoded=png(grey[i])))
                                       for i in range(3)])
    native = data_layer(path)
    assert native.top_shapes[0] == (3, 1, 5, 6)  # as stored (OpenCV's IMREAD_UNCHANGED)
    np.testing.assert_array_equal(read_batches(native, 1)[0][0][0][:, 0], grey)
    colour = data_layer(path, transform={"force_color": True})
    assert colour.top_shapes[0] == (3, 3, 5, 6)
    np.testing.assert_array_equal(read_batches(colour, 1)[0][0][0], np.repeat(grey[:, None], 3, axis=1))
    rgb = PIXELS[:3].transpose(0, 2, 3, 1)
    path = write_lmdb(tmp_path / "c", [(key(i), datum_bytes(label=i, encoded=png(rgb[i])))
                                       for i in range(3)])
    gray = data_layer(path, transform={"force_gray": True})
    want = [np.asarray(Image.fromarray(rgb[i]).convert("L")) for i in range(3)]
    np.testing.assert_array_equal(read_batches(gray, 1)[0][0][0][:, 0], want)


def test_force_colour_on_raw_records_is_refused(tmp_path):
    path = write_lmdb(tmp_path / "db", raw_records())
    with pytest.raises(ConfigError, match="records hold raw pixels"):
        data_layer(path, transform={"force_color": True})


def test_records_that_do_not_fit_are_named(tmp_path):
    records = raw_records() + [(key(9), datum_bytes(PIXELS[0][:, :4, :4], label=9))]
    path = write_lmdb(tmp_path / "db", records)
    with pytest.raises(TrainnetError, match=r"key '00000009': is 4x4, the first record 5x6"):
        read_batches(data_layer(path), 3)
    cropped = data_layer(path, transform={"crop_size": 4})  # cropped, sizes may differ
    got, _ = read_batches(cropped, 3)
    assert got[2][1].tolist() == [16, 9, 10]
    assert got[2][0].shape == (3, 3, 4, 4)


CORRUPT = [
    (b"\xff\xff\xff", "not a Caffe Datum"),
    (datum_bytes(PIXELS[0], shape=(3, 5, 7)), "holds 90 bytes of pixels but its shape 3x5x7 needs 105"),
    (datum_bytes(label=1, encoded=png(PIXELS[0].transpose(1, 2, 0))[:40]), "not a readable image"),
    (datum_bytes(label=1, encoded=b"GIF89a-not-really"), "not a readable image"),
]


@pytest.mark.parametrize("value, reason", CORRUPT)
def test_a_corrupt_record_is_one_error_naming_source_and_key(tmp_path, value, reason):
    records = raw_records()
    records[ORDER.index(2)] = (key(2), value)
    path = write_lmdb(tmp_path / "db", records)
    with pytest.raises(TrainnetError) as exc:
        read_batches(data_layer(path), 2)
    msg = str(exc.value)
    assert str(path) in msg and "key '00000002'" in msg and reason in msg and "\n" not in msg


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_skip_bad_replaces_with_the_next_good_record_and_reports(tmp_path, workers):
    records = dict(raw_records())
    records[key(2)] = CORRUPT[0][0]
    records[key(3)] = CORRUPT[1][0]
    path = write_lmdb(tmp_path / "db", records.items())
    layer = data_layer(path, skip_bad=True, workers=workers, batch_size=7)
    got, reader = read_batches(layer, 2)
    assert got[0][1].tolist() == [10, 11, 14, 14, 14, 15, 16]  # 2 and 3 replaced by 4
    np.testing.assert_array_equal(got[0][0][2], PIXELS[4])
    notes = reader.notes()
    assert len(notes) == 2 and "key '00000002'" in notes[0] and "key '00000003'" in notes[1]
    assert reader.notes() == []  # each reported once


def test_missing_database_lists_the_places_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINNET_DATA", str(tmp_path / "root"))
    with pytest.raises(ConfigError) as exc:
        data_layer("examples/nope_lmdb", backend="LMDB", config=tmp_path / "cfg/net.yaml")
    msg = str(exc.value)
    assert "LMDB database 'examples/nope_lmdb' not found" in msg
    places = [tmp_path / "root/examples/nope_lmdb", tmp_path / "cfg/examples/nope_lmdb",
              tmp_path / "examples/nope_lmdb"]
    assert msg.index(str(places[0])) < msg.index(str(places[1])) < msg.index(str(places[2]) + ",")
    # a Caffe prototxt without a backend: the working directory first, and Caffe's default said
    with pytest.raises(ConfigError) as exc:
        data_layer("examples/nope_leveldb", config=tmp_path / "cfg/net.prototxt")
    msg = str(exc.value)
    assert msg.index(str(tmp_path / "examples/nope_leveldb")) < msg.index(str(tmp_path / "cfg"))
    assert "Caffe would read a LevelDB database" in msg and "working directory" in msg
    assert "trainnet data mnist" not in msg


def test_backend_mismatch_and_non_databases(tmp_path):
    path = write_lmdb(tmp_path / "db", raw_records())
    with pytest.raises(ConfigError, match="is an LMDB database, but backend LEVELDB is asked for"):
        data_layer(path, backend="LEVELDB")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither an LMDB or LevelDB database"):
        data_layer(tmp_path / "empty")
    with pytest.raises(ConfigError, match="not a database folder"):
        data_layer(tmp_path / "empty", backend="LMDB")
    (tmp_path / "text.bin").write_bytes(b"hello")
    with pytest.raises(ConfigError, match="not a whole number of CIFAR-10"):
        data_layer(tmp_path / "text.bin", backend="CIFAR")
    write_lmdb(tmp_path / "none", [])
    with pytest.raises(ConfigError, match="holds no records"):
        data_layer(tmp_path / "none")


def test_leveldb_without_plyvel_says_how_to_install(tmp_path, monkeypatch):
    path = write_leveldb(tmp_path / "db", raw_records())
    forget_database(path)
    monkeypatch.setitem(sys.modules, "plyvel", None)
    with pytest.raises(ConfigError, match=r"pip install 'trainnet\[leveldb\]'"):
        data_layer(path)


def test_shuffle_and_rand_skip_over_a_database(tmp_path):
    path = write_lmdb(tmp_path / "db", raw_records())
    got, _ = read_batches(data_layer(path, shuffle=True, batch_size=7), 3, seed=4)
    epochs = [b[1].astype(int).tolist() for b in got]
    assert all(sorted(e) == list(range(10, 17)) for e in epochs) and epochs[0] != epochs[1]
    starts = {int(read_batches(data_layer(path, rand_skip=7, batch_size=1), 1, seed=s)[0][0][1][0])
              for s in range(10)}
    assert len(starts) > 2


def test_cifar_batches_read_directly(cifar_dir):
    test = data_layer(cifar_dir / "test_batch.bin", phase="TEST", batch_size=10)
    assert test.backend == "CIFAR" and test.top_shapes == [(10, 3, 32, 32), (10,)]
    (data, label), = read_batches(test, 1)[0]
    assert label.astype(int).tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    raw = np.fromfile(cifar_dir / "test_batch.bin", np.uint8, count=10 * 3073).reshape(10, 3073)
    np.testing.assert_array_equal(data, raw[:, 1:].reshape(10, 3, 32, 32))  # RGB planes as stored
    train = data_layer(str(cifar_dir / "data_batch_*.bin"), batch_size=5)
    assert train.backend == "CIFAR" and train.n == 50000 and len(train.paths) == 5
    assert read_batches(train, 1)[0][0][1].astype(int).tolist() == [6, 9, 9, 4, 1]


def test_skipped_records_reach_the_training_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = dict(raw_records())
    records[key(5)] = b"\x00garbage"
    write_lmdb(tmp_path / "db", records.items())
    (tmp_path / "net.yaml").write_text(
        "layer:\n"
        "  - {name: d, type: Data, top: [data, label], source: db, batch_size: 7, skip_bad: true}\n"
        "  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 20,\n"
        "     weight_filler: {type: xavier}}\n"
        "  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}\n")
    (tmp_path / "solver.yaml").write_text("net: net.yaml\nbase_lr: 0.001\ndisplay: 1\nmax_iter: 3\n"
                                          "snapshot_after_train: false\nsnapshot_prefix: run\n")
    from trainnet.netcfg import load_solver
    from trainnet.solver.solver import Solver
    lines: list[str] = []
    Solver(load_solver(tmp_path / "solver.yaml"), log=lines.append).solve()
    noted = [l for l in lines if "data:" in l]
    assert len(noted) == 1 and "skipped key '00000005': not a Caffe Datum" in noted[0], lines
    log = (tmp_path / "run_log.jsonl").read_text()
    assert '"event": "data"' in log and "00000005" in log


def test_with_a_mean_file_every_record_has_the_means_size(tmp_path):
    """Caffe CHECKs each datum against the mean's shape; cropping does not lift that."""
    from trainnet.formats.blobproto import save_blob

    save_blob(tmp_path / "mean.binaryproto", np.full((1, 3, 5, 6), 7, np.float32))
    records = raw_records() + [(key(9), datum_bytes(RNG.integers(0, 256, (3, 8, 8), np.uint8), 9))]
    path = write_lmdb(tmp_path / "db", records)
    layer = data_layer(path, transform={"crop_size": 4, "mean_file": str(tmp_path / "mean.binaryproto")})
    with pytest.raises(TrainnetError, match=r"key '00000009': is 3x8x8, but the mean_file is 3x5x6"):
        read_batches(layer, 3)


def test_a_truncated_lmdb_is_refused_not_a_crash(tmp_path):
    path = write_lmdb(tmp_path / "db", [(key(i), datum_bytes(PIXELS[i % 7], i)) for i in range(60)])
    size = (path / "data.mdb").stat().st_size
    with open(path / "data.mdb", "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(ConfigError, match="a truncated LMDB database"):
        data_layer(path)
