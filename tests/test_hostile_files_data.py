"""Corrupt and hostile dataset files end in one clean line naming the file, in bounded time and
memory: IDX (gzip and raw; decompression bombs), a mean file, CIFAR binary batches, Datum
records in LMDB and LevelDB, each through its reader (the damaged-copy families of
test_hostile_files.py) and through `trainnet train` / `trainnet data` over a small net."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from datum_writer import datum_bytes, write_leveldb, write_lmdb
from hostile import assert_one_error, cli
from test_hostile_files import check_family, family, peak_bytes, refused
from trainnet.data import cifar, idx
from trainnet.data.datum import RecordError, datum_array, parse_datum
from trainnet.data.idx import read_idx, write_idx
from trainnet.formats.blobproto import save_blob

RNG = np.random.default_rng(20)
IMAGES = RNG.integers(0, 256, (12, 6, 6), dtype=np.uint8)
LABELS = (np.arange(12) % 10).astype(np.uint8)


@pytest.fixture(autouse=True)
def fresh_caches():
    yield
    from trainnet.data import db
    idx.clear_cache()
    cifar._CACHE.clear()
    db._close_all()


def train_over(folder: Path, data: str, labels: int = 10) -> object:
    """`trainnet train` for two iterations of a net reading ``data`` (a data layer's YAML, tops
    data and label); no output must be left when it fails."""
    (folder / "net.yaml").write_text(
        f"name: hostile\nlayer:\n  - {data}\n"
        f"  - {{name: ip, type: InnerProduct, bottom: data, top: ip, num_output: {labels},\n"
        "     weight_filler: {type: xavier}}\n"
        "  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}\n")
    (folder / "solver.yaml").write_text(f"net: net.yaml\nbase_lr: 0.01\nmax_iter: 2\n"
                                        f"snapshot_prefix: {folder / 'out' / 'h'}\nrandom_seed: 1\n")
    return cli("train", folder / "solver.yaml")


def failed_cleanly(outcome, folder: Path, *fragments: str) -> str:
    """One error line holding ``fragments``, and no weights or state written (the log of the
    failed run and the solver and net as it ran them, ``*_solver.yaml``/``*_net.yaml``, may
    stay: they record what was attempted)."""
    line = assert_one_error(outcome, *fragments)
    left = [p.name for p in (folder / "out").glob("*")
            if not p.name.endswith(("_log.jsonl", "_solver.yaml", "_net.yaml"))]
    assert not left, f"a failed run left {left}"
    return line


# --- IDX ---------------------------------------------------------------------------------------

def idx_header(*shape: int, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def gzip_bomb(head: bytes, total: int, chunk: int = 1 << 20) -> bytes:
    """A gzip member holding ``head`` then zeros up to ``total`` bytes in all, built in time
    proportional to its compressed size: one flushed deflate block of zeros, repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(total - len(head), chunk)
    body = first + block * count + c.compress(bytes(rest)) + c.flush(zlib.Z_FINISH)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + struct.pack("<II", 0, total % 2**32)


@pytest.mark.parametrize("suffix", [".gz", ".idx"])
def test_idx_family(tmp_path, suffix):
    write_idx(tmp_path / f"good{suffix}", IMAGES, compress=suffix == ".gz")
    check_family(tmp_path, (tmp_path / f"good{suffix}").read_bytes(), suffix,
                 lambda p: (idx.clear_cache(), read_idx(p))[1], lambda a: a.shape, seed=7)


def test_mnist_gz_inflating_to_5_5_gb_is_streamed_with_a_bound(tmp_path):
    """The header says 60000 x 28 x 28 (47 MB), the stream inflates to 5.5 GB: reading stops one
    byte past the header's figure.  A header declaring 5.5 GB itself is refused from the header."""
    honest = tmp_path / "train-images-idx3-ubyte.gz"
    honest.write_bytes(gzip_bomb(idx_header(60000, 28, 28), 5_500_000_000))
    assert honest.stat().st_size < 6 * 2**20
    assert "more data after the 60000x28x28 uint8" in refused(read_idx, honest)
    assert peak_bytes(lambda: read_idx(honest)) < 60 * 2**20
    huge = tmp_path / "huge-images-idx3-ubyte.gz"
    huge.write_bytes(gzip_bomb(idx_header(7_000_000, 28, 28), 5_500_000_000))
    assert "more than trainnet reads from one IDX file" in refused(read_idx, huge)
    assert peak_bytes(lambda: read_idx(huge)) < 2**20
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(60000, np.uint8))
    layer = (f"{{name: d, type: Data, top: [data, label], source: {honest}, batch_size: 2, "
             "include: {phase: TRAIN}}")
    failed_cleanly(train_over(tmp_path, layer), tmp_path, str(honest), "more data after")


@pytest.mark.parametrize("name, data, message", [
    ("count.gz", gzip.compress(idx_header(2**31, 28, 28) + bytes(100)), "bytes of gzip can hold"),
    ("dims.idx", idx_header(2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(10), "truncated"),
    ("short.gz", gzip.compress(idx_header(12, 6, 6) + bytes(400)), "truncated: the header declares"),
    ("long.gz", gzip.compress(idx_header(12, 6, 6) + bytes(500)), "more data after the 12x6x6"),
    ("crc.gz", None, "CRC check failed"),
    ("cut.gz", None, "truncated gzip stream"),
    ("tail.gz", None, "corrupt gzip data"),
])
def test_damaged_idx_files(tmp_path, name, data, message):
    good = gzip.compress(idx_header(12, 6, 6) + IMAGES.tobytes(), mtime=0)
    data = data or {"crc.gz": good[:-8] + bytes(4) + good[-4:], "cut.gz": good[:-9],
                    "tail.gz": good + b"trailing junk"}[name]
    path = tmp_path / name
    path.write_bytes(data)
    assert message in refused(read_idx, path)
    assert peak_bytes(lambda: (idx.clear_cache(), read_idx(path))) < 2**20


def test_damaged_idx_through_train(tmp_path):
    """With no backend given, a damaged IDX file is named with what is wrong with it (not as
    "neither IDX nor CIFAR"), a pipe as not a regular file, without opening it."""
    labels = tmp_path / "l-labels-idx1-ubyte.gz"
    write_idx(labels, LABELS)
    images = tmp_path / "l-images-idx3-ubyte.gz"
    for data, message in ((gzip.compress(idx_header(2**31, 6, 6) + bytes(10)), "bytes of gzip"),
                          (gzip.compress(idx_header(12, 6, 6) + IMAGES.tobytes())[:-9], "truncated"),
                          (idx_header(12, 6, 6) + bytes(5), "truncated")):
        images.write_bytes(data)
        layer = f"{{name: d, type: Data, top: [data, label], source: {images}, batch_size: 2}}"
        failed_cleanly(train_over(tmp_path, layer), tmp_path, str(images), message)
    images.unlink()
    os.mkfifo(images)
    failed_cleanly(train_over(tmp_path, layer), tmp_path, str(images), "not a regular file")


def test_a_damaged_mean_file_through_train(tmp_path):
    labels = tmp_path / "m-labels-idx1-ubyte.gz"
    write_idx(labels, LABELS)
    write_idx(tmp_path / "m-images-idx3-ubyte.gz", IMAGES)
    mean = tmp_path / "mean.binaryproto"
    save_blob(mean, np.zeros((1, 1, 6, 6), np.float32), legacy=True)
    good = mean.read_bytes()
    layer = (f"{{name: d, type: Data, top: [data, label], source: {tmp_path / 'm-images-idx3-ubyte.gz'}, "
             f"batch_size: 2, transform_param: {{mean_file: {mean}}}}}")
    for damage in (good[:len(good) // 2], good[:4], b""):
        mean.write_bytes(damage)
        failed_cleanly(train_over(tmp_path, layer), tmp_path, str(mean), "mean_file")


# --- CIFAR -------------------------------------------------------------------------------------

def cifar_bytes(count: int = 5) -> bytes:
    records = np.concatenate([LABELS[:count, None], RNG.integers(0, 256, (count, 3072))], axis=1)
    return records.astype(np.uint8).tobytes()


def test_cifar_family(tmp_path):
    check_family(tmp_path, cifar_bytes(), ".bin", lambda p: (cifar._CACHE.clear(),
                 cifar.read_cifar([p]))[1], lambda got: got[0].shape, seed=8,
                 cut_ok=lambda got: True)  # a whole number of records: the format has no count


def test_cifar_labels_out_of_range_are_refused(tmp_path):
    """CIFAR has no magic, but a record misaligned by a lost byte, or a file of another kind
    that happens to have the size, shows as a label byte out of range."""
    data = bytearray(cifar_bytes())
    data[3073 * 2] = 200
    (tmp_path / "b.bin").write_bytes(bytes(data))
    assert "record 2 has label 200" in refused(lambda p: cifar.read_cifar([p]), tmp_path / "b.bin")
    layer = f"{{name: d, type: Data, top: [data, label], source: {tmp_path / 'b.bin'}, batch_size: 2}}"
    failed_cleanly(train_over(tmp_path, layer), tmp_path, "b.bin", "label 200")


# --- Datum records (LMDB, LevelDB) -----------------------------------------------------------------

def datum_family() -> dict[str, bytes]:
    good = datum_bytes(IMAGES[:1], label=1)
    cases = {k: v for k, v in family(good, seed=9, flips=16).items() if k != "empty"}
    cases["negative"] = datum_bytes(np.zeros(6, np.uint8), shape=(-1, -1, 6))
    cases["huge"] = datum_bytes(np.zeros(4, np.uint8), shape=(2**30, 2**30, 1))
    cases["empty"] = b""
    return cases


def test_datum_family():
    for name, value in datum_family().items():
        try:
            image = datum_array(parse_datum(value))
        except RecordError:
            continue
        assert image.shape == (1, 6, 6) or name.startswith("flip"), name


@pytest.mark.parametrize("backend", ["LMDB", "LEVELDB"])
def test_a_corrupt_datum_stops_training_with_one_line(tmp_path, backend):
    """Without skip_bad, the first bad record stops the run naming the database and the key."""
    pytest.importorskip("plyvel") if backend == "LEVELDB" else None
    writer = write_lmdb if backend == "LMDB" else write_leveldb
    cases = datum_family()
    for name in ("cut16", "negative", "huge", "empty"):
        records = [(b"%03d" % i, datum_bytes(IMAGES[i:i + 1], label=int(LABELS[i]))) for i in range(4)]
        records[2] = (b"002", cases[name])
        db = writer(tmp_path / f"{name}_{backend.lower()}", records)
        layer = f"{{name: d, type: Data, top: [data, label], source: {db}, batch_size: 2}}"
        failed_cleanly(train_over(tmp_path, layer), tmp_path, str(db), "key '002'")
    records[0] = (b"000", b"\xff" * 10)   # the first record shapes the layer: a compile error
    db = writer(tmp_path / f"first_{backend.lower()}", records)
    layer = f"{{name: d, type: Data, top: [data, label], source: {db}, batch_size: 2}}"
    failed_cleanly(train_over(tmp_path, layer), tmp_path, str(db), "first record")


def test_a_damaged_database_file(tmp_path):
    """An empty, zeroed or cut data.mdb, a B-tree page of the wrong type (liblmdb's
    MDB_CORRUPTED was a traceback), a LevelDB table with a flipped byte (read without checksums
    it gave other values without a word)."""
    db = write_lmdb(tmp_path / "db", [(b"%d" % i, datum_bytes(IMAGES[i:i + 1])) for i in range(4)])
    good = (db / "data.mdb").read_bytes()
    layer = f"{{name: d, type: Data, top: [data, label], source: {db}, batch_size: 2}}"
    for damage in (b"", bytes(4096), good[:5000], _wrong_root_page(good)):
        (db / "data.mdb").write_bytes(damage)
        failed_cleanly(train_over(tmp_path, layer), tmp_path, str(db))
    plyvel = pytest.importorskip("plyvel")
    db = write_leveldb(tmp_path / "ldb", [(b"%03d" % i, datum_bytes(IMAGES[i % 12:i % 12 + 1]))
                                          for i in range(50)])
    with plyvel.DB(str(db)) as handle:
        handle.compact_range()   # the records into a table file (.ldb), in CRC-checked blocks
    table, = db.glob("*.ldb")
    data = bytearray(table.read_bytes())
    data[len(data) // 3] ^= 0x55
    table.write_bytes(bytes(data))
    layer = f"{{name: d, type: Data, top: [data, label], source: {db}, batch_size: 2}}"
    failed_cleanly(train_over(tmp_path, layer), tmp_path, str(db))


def _wrong_root_page(data: bytes, page: int = 4096) -> bytes:
    """data.mdb with its main B-tree's root page marked an overflow page: of the two meta pages
    the one of the later transaction names the root (MDB_meta: md_root at 128, txnid at 144)."""
    metas = [struct.unpack_from("<QQ", data, p * page + 128) for p in (0, 1)]
    root = max(metas, key=lambda m: m[1])[0]
    damaged = bytearray(data)
    damaged[root * page + 10] = 0x04   # mp_flags: P_OVERFLOW
    return bytes(damaged)


def test_data_mean_over_a_corrupt_record_writes_nothing(tmp_path):
    db = write_lmdb(tmp_path / "db", [(b"0", datum_bytes(IMAGES[:1])), (b"1", b"\x08\x01\x22\x05ab")])
    assert_one_error(cli("data", "mean", db, tmp_path / "mean.binaryproto"), str(db), "'1'")
    assert not (tmp_path / "mean.binaryproto").exists()
