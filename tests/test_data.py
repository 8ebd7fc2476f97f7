"""IDX reading, data-path resolution, the Data layer and the MNIST download."""

import gzip
import hashlib
import shutil

import numpy as np
import pytest

from layer_check import build, run_forward
from trainnet.data.download import MNIST_SHA256, download_mnist
from trainnet.data.idx import read_idx, read_idx_header, write_idx
from trainnet.data.paths import DataRoot, resolve_data_path
from trainnet.errors import ConfigError, TrainnetError
from trainnet.layers.base import layer_class
from trainnet.netcfg.common import TransformationParameter
from trainnet.netcfg.net import LayerConfig

N, H, W = 10, 6, 8


def images(n=N, c=None):
    shape = (n, H, W) if c is None else (n, c, H, W)
    return (np.arange(np.prod(shape)) % 251).astype(np.uint8).reshape(shape)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A 10-item dataset whose labels are the item numbers, found through TRAINNET_DATA."""
    monkeypatch.setenv("TRAINNET_DATA", str(tmp_path))
    (tmp_path / "toy").mkdir()
    write_idx(tmp_path / "toy/train-images-idx3-ubyte.gz", images())
    write_idx(tmp_path / "toy/train-labels-idx1-ubyte.gz", np.arange(N, dtype=np.uint8))
    return tmp_path


def data_layer(phase="TRAIN", tops=("data", "label"), transform=None, config=None, **params):
    cls = layer_class("Data")
    p = cls.Params.model_validate({"source": "toy/train-images-idx3-ubyte.gz", "batch_size": 4,
                                   **params})
    common = LayerConfig(name="data", type="Data", top=list(tops), params=p,
                         transform_param=TransformationParameter(**(transform or {})))
    return cls("data", p, phase, [], common=common, data_root=DataRoot.of(config))


def batches(layer, count, seed=0, state=None):
    reader = layer.make_state(np.random.default_rng(seed))
    if state is not None:
        reader.set_state(state)
    out = []
    for _ in range(count):
        data, label = (np.empty(s, np.float32) for s in layer.top_shapes)
        reader.next_batch(data, label)
        out.append((data, label))
    return out, reader


# --- IDX -------------------------------------------------------------------------------------

def test_real_mnist(mnist_dir):
    train = read_idx(mnist_dir / "train-images-idx3-ubyte.gz")
    assert train.shape == (60000, 28, 28) and train.dtype == np.uint8
    assert read_idx(mnist_dir / "train-images-idx3-ubyte.gz") is train  # decoded once
    assert list(read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")[:5]) == [5, 0, 4, 1, 9]
    test_labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert test_labels.shape == (10000,) and list(test_labels[:5]) == [7, 2, 1, 0, 4]
    assert read_idx_header(mnist_dir / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)


def test_gzip_detected_by_magic_and_wide_types(tmp_path):
    a = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    write_idx(tmp_path / "plain.gz", a, compress=False)
    write_idx(tmp_path / "packed.idx", a.astype(np.float32), compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed.idx"), a)
    assert read_idx(tmp_path / "packed.idx").dtype == np.float32


def test_cache_sees_a_rewritten_file(tmp_path):
    path = tmp_path / "a.idx"
    write_idx(path, np.zeros(3, np.uint8))
    assert read_idx(path).shape == (3,)
    write_idx(path, np.zeros(5, np.uint8))
    assert read_idx(path).shape == (5,)


GOOD = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(6)


@pytest.mark.parametrize("name, raw, message", [
    ("magic.idx", b"\x12\x34" + GOOD[2:], "not an IDX file"),
    ("code.idx", GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX data type code 0x07"),
    ("short.idx", GOOD[:-1], "truncated: the header declares 2x3 uint8 (6 bytes of data) but the file holds 5"),
    ("header.idx", GOOD[:9], "truncated inside the header"),
    ("tiny.idx", GOOD[:2], "too short for an IDX header"),
    ("long.idx", GOOD + b"xy", "2 unexpected bytes"),
    ("cut.gz", gzip.compress(GOOD)[:-12], "truncated gzip stream"),
    ("garbage.gz", b"\x1f\x8b" + bytes(range(40)), "corrupt gzip data"),
    ("short.gz", gzip.compress(GOOD[:-1]), "truncated: the header declares 2x3 uint8"),
])
def test_bad_idx_files(tmp_path, name, raw, message):
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(TrainnetError, match=str(path).replace(".", r"\.")) as exc:
        read_idx(path)
    assert message in str(exc.value)
    if not name.endswith(".gz") and "unexpected" not in message and "truncated:" not in message:
        with pytest.raises(TrainnetError, match="IDX|truncated"):
            read_idx_header(path)


def test_missing_idx_file(tmp_path):
    with pytest.raises(TrainnetError, match="nope.idx: no such file"):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(TrainnetError, match="no such file"):
        read_idx_header(tmp_path / "nope.idx")


def test_header_checks_plain_file_size(tmp_path):
    (tmp_path / "a.idx").write_bytes(GOOD[:-2])
    with pytest.raises(TrainnetError, match="truncated"):
        read_idx_header(tmp_path / "a.idx")


# --- paths -----------------------------------------------------------------------------------

def test_resolve_order(tmp_path, monkeypatch):
    env, base, cwd = (tmp_path / d for d in ("env", "base", "cwd"))
    for d in (env, base, cwd):
        d.mkdir()
        (d / "f").write_text(d.name)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TRAINNET_DATA", str(env))
    assert resolve_data_path("f", base) == env / "f"
    (env / "f").unlink()
    assert resolve_data_path("f", base) == base / "f"
    (base / "f").unlink()
    assert resolve_data_path("f", base).resolve() == (cwd / "f").resolve()
    (base / "g").touch()
    assert resolve_data_path(str(base / "g"), tmp_path / "elsewhere") == base / "g"
    (cwd / "f").unlink()
    with pytest.raises(TrainnetError) as exc:
        resolve_data_path("f", base)
    msg = str(exc.value)
    assert all(str(d / "f") in msg for d in (env, base)) and "TRAINNET_DATA" in msg
    assert "`trainnet data`" in msg
    with pytest.raises(TrainnetError, match="`trainnet data mnist` downloads MNIST"):
        resolve_data_path("mnist/t10k-images-idx3-ubyte.gz", base)


# --- the Data layer --------------------------------------------------------------------------

def test_data_layer_through_build(toy):
    layer = build("Data", {"source": "toy/train-images-idx3-ubyte.gz", "batch_size": 3})
    assert layer.top_shapes == [(3, 1, H, W), (3,)]
    assert layer.is_data and not layer.has_backward
    io = run_forward(layer, [])
    np.testing.assert_array_equal(io.top[0], images()[:3, None])
    np.testing.assert_array_equal(io.top[1], [0, 1, 2])


def test_scale_mean_and_wraparound(toy):
    layer = data_layer(transform={"scale": 0.5, "mean_value": 3.0})
    got, _ = batches(layer, 3)
    assert [list(l) for _, l in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert got[0][0].dtype == np.float32
    np.testing.assert_allclose(got[2][0], (images()[[8, 9, 0, 1], None] - 3.0) * 0.5)


def test_per_channel_mean(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINNET_DATA", str(tmp_path))
    (tmp_path / "toy").mkdir()
    write_idx(tmp_path / "toy/train-images-idx3-ubyte", images(c=3))
    write_idx(tmp_path / "toy/labels", np.arange(N, dtype=np.uint8))
    layer = data_layer(source="toy/train-images-idx3-ubyte", label_source="toy/labels",
                       transform={"mean_value": [1, 2, 3], "scale": 2.0})
    assert layer.top_shapes[0] == (4, 3, H, W)
    (data, _), = batches(layer, 1)[0]
    np.testing.assert_allclose(data, (images(c=3)[:4] - np.array([1, 2, 3])[:, None, None]) * 2)


def test_rand_skip_and_one_top(toy):
    layer = data_layer(tops=("data",), rand_skip=12, source="toy/train-images-idx3-ubyte.gz")
    assert layer.top_shapes == [(4, 1, H, W)]
    starts = set()
    for seed in range(12):
        reader = layer.make_state(np.random.default_rng(seed))
        data = np.empty(layer.top_shapes[0], np.float32)
        reader.next_batch(data)
        start = int(np.flatnonzero((images()[:, None] == data[0]).all(axis=(1, 2, 3)))[0])
        np.testing.assert_array_equal(data, images()[[(start + i) % N for i in range(4)], None])
        starts.add(start)
    assert len(starts) > 2  # Caffe's random skip in [0, rand_skip), modulo the 10 items


def test_shuffle(toy):
    def order(seed):
        got, _ = batches(data_layer(shuffle=True, batch_size=5), 4, seed)
        return np.concatenate([l for _, l in got]).astype(int)

    a = order(1)
    assert sorted(a[:10]) == list(range(10)) and sorted(a[10:]) == list(range(10))
    assert list(a[:10]) != list(range(10)) and list(a[:10]) != list(a[10:])  # reshuffled
    np.testing.assert_array_equal(a, order(1))
    assert list(a) != list(order(2))
    got, _ = batches(data_layer(shuffle=True, batch_size=5), 1, 1)
    np.testing.assert_array_equal(got[0][0][:, 0], images()[got[0][1].astype(int)])


def test_state_resumes_bit_exactly(toy):
    layer = data_layer(shuffle=True, batch_size=3, transform={"crop_size": 4, "mirror": True})
    _, reader = batches(layer, 5, seed=3)
    state = reader.get_state()
    assert all(isinstance(v, np.ndarray) for v in state.values()) and state["rng"].dtype == np.uint8
    expect = []
    for _ in range(6):
        data, label = (np.empty(s, np.float32) for s in layer.top_shapes)
        reader.next_batch(data, label)
        expect.append((data, label))
    got, _ = batches(layer, 6, seed=99, state=state)
    for (d0, l0), (d1, l1) in zip(expect, got):
        assert d0.tobytes() == d1.tobytes() and l0.tobytes() == l1.tobytes()
    with pytest.raises(TrainnetError, match="permutation"):
        reader.set_state({**state, "perm": np.zeros(N, np.int64)})


def windows(img, size):
    """Every size x size window of img and its mirror image, as bytes."""
    h, w = img.shape
    out = {img[y:y + size, x:x + size].tobytes() for y in range(h - size + 1) for x in range(w - size + 1)}
    return out, {img[y:y + size, x:x + size][:, ::-1].tobytes() for y in range(h - size + 1)
                 for x in range(w - size + 1)}


def test_crop_and_mirror(toy):
    train = data_layer(batch_size=10, transform={"crop_size": 4, "mirror": True})
    assert train.top_shapes == [(10, 1, 4, 4), (10,)]
    flips = 0
    for data, label in batches(train, 3, seed=5)[0]:
        for item, i in zip(data[:, 0].astype(np.uint8), label.astype(int)):
            plain, mirrored = windows(images()[i], 4)
            assert item.tobytes() in plain | mirrored
            flips += item.tobytes() in mirrored
    assert 0 < flips < 30
    test = data_layer("TEST", batch_size=10, transform={"crop_size": 4, "mirror": True})
    (data, _), = batches(test, 1, seed=3)[0]
    centred = images()[:10, 1:5, 2:6]
    flipped = [not np.array_equal(d, c) for d, c in zip(data[:, 0], centred)]
    for d, c, f in zip(data[:, 0], centred, flipped):  # centred; mirrored at random, as Caffe does
        np.testing.assert_array_equal(d, c[:, ::-1] if f else c)
    assert 0 < sum(flipped) < 10


def test_mirror_without_crop(toy):
    layer = data_layer(batch_size=10, transform={"mirror": True})
    (data, label), = batches(layer, 1, seed=2)[0]
    flipped = [not np.array_equal(d[0], images()[i]) for d, i in zip(data, label.astype(int))]
    for d, i, f in zip(data, label.astype(int), flipped):
        np.testing.assert_array_equal(d[0], images()[i][:, ::-1] if f else images()[i])
    assert 0 < sum(flipped) < 10


@pytest.mark.parametrize("kw, message", [
    ({"transform": {"mean_file": "mean.binaryproto", "mean_value": [1]}}, "mean_file or mean_value, not both"),
    ({"transform": {"crop_size": 7}}, "crop_size 7 exceeds the 6x8 images"),
    ({"transform": {"mean_value": [1, 2]}}, "mean_value: give 1 value, got 2"),
    ({"source": "toy/nothing-images-idx3-ubyte.gz"}, "not found"),
    ({"source": "toy/images.gz"}, "cannot be derived"),
    ({"label_source": "toy/train-images-idx3-ubyte.gz"}, "labels must be 1-D"),
])
def test_data_layer_errors(toy, kw, message):
    if kw.get("source") == "toy/images.gz":
        shutil.copy(toy / "toy/train-images-idx3-ubyte.gz", toy / "toy/images.gz")
    with pytest.raises(ConfigError, match="layer 'data' \\(Data\\)") as exc:
        data_layer(**kw)
    assert message in str(exc.value)


def test_counts_must_match_and_base_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINNET_DATA", raising=False)
    (tmp_path / "toy").mkdir()
    write_idx(tmp_path / "toy/train-images-idx3-ubyte.gz", images())
    write_idx(tmp_path / "toy/train-labels-idx1-ubyte.gz", np.arange(N - 1, dtype=np.uint8))
    with pytest.raises(ConfigError, match="holds 10 images but .* holds 9 labels"):
        data_layer(config=tmp_path / "net.yaml")
    write_idx(tmp_path / "toy/train-labels-idx1-ubyte.gz", np.arange(N, dtype=np.uint8))
    layer = data_layer(config=tmp_path / "net.yaml")
    assert layer.paths[0] == tmp_path / "toy/train-images-idx3-ubyte.gz"  # beside the config
    assert batches(layer, 1)[0][0][1].tolist() == [0, 1, 2, 3]


def test_real_mnist_layer(mnist_dir, monkeypatch):
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    layer = data_layer("TEST", source="mnist/t10k-images-idx3-ubyte.gz", batch_size=64,
                       transform={"scale": 0.00390625})
    assert layer.top_shapes == [(64, 1, 28, 28), (64,)]
    (data, label), = batches(layer, 1)[0]
    assert list(label[:5]) == [7, 2, 1, 0, 4] and 0 <= data.min() and data.max() < 1


# --- download --------------------------------------------------------------------------------

def test_download_from_file_mirror(mnist_dir, tmp_path):
    dest = tmp_path / "data/mnist"
    paths = download_mnist(dest, mirror=mnist_dir.as_uri() + "/")
    assert sorted(p.name for p in dest.iterdir()) == sorted(MNIST_SHA256)
    for p in paths:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == MNIST_SHA256[p.name]
    before = {p: p.stat().st_mtime_ns for p in paths}
    download_mnist(dest, mirror="http://127.0.0.1:9/")  # all present: nothing fetched
    assert before == {p: p.stat().st_mtime_ns for p in paths}


def test_download_checksum_mismatch(mnist_dir, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(mnist_dir, mirror)
    (mirror / "t10k-labels-idx1-ubyte.gz").chmod(0o644)
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    dest = tmp_path / "dest"
    with pytest.raises(TrainnetError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        download_mnist(dest, mirror=mirror.as_uri())
    assert not (dest / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no temp file left


def test_download_network_error(tmp_path):
    with pytest.raises(TrainnetError) as exc:
        download_mnist(tmp_path / "mnist", mirror="http://127.0.0.1:9/", timeout=5)
    msg = str(exc.value)
    assert "http://127.0.0.1:9/train-images-idx3-ubyte.gz failed" in msg
    assert "no network" in msg and "TRAINNET_DATA" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert list((tmp_path / "mnist").iterdir()) == []
