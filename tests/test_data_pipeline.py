"""Caffe's DataTransformer against its own index arithmetic, written out loop by loop; batches
the same whatever the workers and prefetch depth; the reader's state as of the batches handed
out, so a resume across an epoch's end is exact; the sampler's blockwise shuffle."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from datum_writer import datum_bytes, write_lmdb
from trainnet.data.sampler import Sampler
from trainnet.data.transform import Draws, Transformer
from trainnet.errors import TrainnetError
from trainnet.layers.base import layer_class
from trainnet.netcfg.common import TransformationParameter
from trainnet.netcfg.net import LayerConfig


def caffe_transform(img, crop, h_off, w_off, mirror, mean_image=None, mean_values=None, scale=1.0):
    """DataTransformer::Transform as Caffe writes it: per output pixel, the source index, the
    mirrored target index, (x - mean) * scale in float."""
    C, H, W = img.shape
    height, width = (crop, crop) if crop else (H, W)
    flat, out = img.reshape(-1), np.zeros(C * height * width, np.float32)
    scale = np.float32(scale)
    for c in range(C):
        for h in range(height):
            for w in range(width):
                data_index = (c * H + h_off + h) * W + w_off + w
                top_index = (c * height + h) * width + (width - 1 - w if mirror else w)
                x = np.float32(flat[data_index])
                if mean_image is not None:
                    out[top_index] = (x - np.float32(mean_image.reshape(-1)[data_index])) * scale
                elif mean_values is not None:
                    m = mean_values[c] if len(mean_values) > 1 else mean_values[0]
                    out[top_index] = (x - np.float32(m)) * scale
                else:
                    out[top_index] = x * scale
    return out.reshape(C, height, width)


def test_a_hand_computed_example():
    img = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    tp = TransformationParameter(crop_size=2, mirror=True, mean_value=[1], scale=0.5)
    t = Transformer(tp, train=False, item_shape=(1, 3, 4))
    out = np.empty((1, 2, 2), np.float32)
    t.apply(img, Draws(mirror=np.array([True])), 0, out)  # TEST: centre (0, 1), mirrored
    np.testing.assert_array_equal(out[0], [[0.5, 0.0], [2.5, 2.0]])  # ([[2,1],[6,5]] - 1) / 2
    t.apply(img, Draws(mirror=np.array([False])), 0, out)
    np.testing.assert_array_equal(out[0], [[0.0, 0.5], [2.0, 2.5]])


CASES = [
    dict(crop_size=3, mirror=True, mean="image", scale=0.25),
    dict(crop_size=4, mirror=True, mean=[10.0, 20.0, 30.0], scale=1.0),
    dict(crop_size=0, mirror=True, mean=[5.5], scale=2.0),
    dict(crop_size=5, mirror=False, mean=None, scale=0.00390625),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("train", [True, False])
def test_transform_matches_caffes_loop(case, train):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 3, 7, 9), dtype=np.uint8)
    mean_image = rng.uniform(0, 255, (3, 7, 9)).astype(np.float32) if case["mean"] == "image" else None
    tp = TransformationParameter(crop_size=case["crop_size"], mirror=case["mirror"],
                                 scale=case["scale"], mean_file="m" if mean_image is not None else None,
                                 mean_value=case["mean"] if isinstance(case["mean"], list) else [])
    t = Transformer(tp, train, (3, 7, 9), mean_image)
    draws = t.draw(rng, 6)
    if train and tp.crop_size:  # the ends of the range are reachable
        draws = Draws(draws.mirror, np.vstack([[0.0, 0.0], [0.9999, 0.9999], draws.crop[2:]]))
    idx = np.array([5, 0, 3, 3, 1, 2])
    batch = np.empty((6,) + t.out_shape, np.float32)
    t.apply_batch(images, idx, draws, batch)
    one = np.empty(t.out_shape, np.float32)
    for k, i in enumerate(idx):
        h_off, w_off = t.offsets(draws, k, 7, 9)
        mirror = bool(draws.mirror[k]) if draws.mirror is not None else False
        want = caffe_transform(images[i], tp.crop_size, h_off, w_off, mirror, mean_image,
                               tp.mean_value or None, tp.scale)
        np.testing.assert_array_equal(batch[k], want)
        t.apply(images[i], draws, k, one)  # the per-record path (decoded images) agrees
        np.testing.assert_array_equal(one, want)
        if tp.crop_size and not train:
            assert (h_off, w_off) == ((7 - tp.crop_size) // 2, (9 - tp.crop_size) // 2)
    if train and tp.crop_size:
        assert t.offsets(draws, 0, 7, 9) == (0, 0)
        assert t.offsets(draws, 1, 7, 9) == (7 - tp.crop_size, 9 - tp.crop_size)


def test_mean_image_must_be_the_uncropped_size():
    tp = TransformationParameter(crop_size=2, mean_file="m")
    with pytest.raises(ValueError, match="must be of the uncropped image size"):
        Transformer(tp, True, (3, 7, 9), np.zeros((3, 2, 2), np.float32))


# --- the reader: workers, prefetch, state ---------------------------------------------------

def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    hwc = (np.linspace(0, 200, 12 * 14 * 3).reshape(12, 14, 3) + rng.integers(0, 50, (12, 14, 3)))
    out = io.BytesIO()
    Image.fromarray(hwc.astype(np.uint8)).save(out, "JPEG", quality=85)
    return out.getvalue()


@pytest.fixture
def encoded_db(tmp_path):
    """11 encoded JPEG records: decoding runs in the workers."""
    return write_lmdb(tmp_path / "jpeg_lmdb", [(b"%08d" % i, datum_bytes(label=i, encoded=jpeg(i)))
                                               for i in range(11)])


def layer(source, phase="TRAIN", **params):
    cls = layer_class("Data")
    p = cls.Params.model_validate({"source": str(source), "batch_size": 4, "shuffle": True, **params})
    tp = TransformationParameter(crop_size=9, mirror=True, mean_value=[100, 110, 120], scale=0.5)
    common = LayerConfig(name="data", type="Data", top=["data", "label"], params=p,
                         transform_param=tp)
    return cls("data", p, phase, [], common=common)


def batches(reader, shapes, count):
    out = []
    for _ in range(count):
        tops = [np.empty(s, np.float32) for s in shapes]
        reader.next_batch(*tops)
        out.append(tuple(t.tobytes() for t in tops))
    return out


def test_batches_are_the_same_whatever_the_workers(encoded_db):
    want = None
    for workers, prefetch in [(0, 4), (1, 1), (1, 4), (2, 2), (4, 3)]:
        l = layer(encoded_db, workers=workers, prefetch=prefetch)
        got = batches(l.make_state(np.random.default_rng(5)), l.top_shapes, 9)  # 36 items: 3+ epochs
        if want is None:
            want = got
        assert got == want, (workers, prefetch)
    labels = [np.frombuffer(b[1], np.float32) for b in want]
    first = np.concatenate(labels)[:11].astype(int)
    assert sorted(first) == list(range(11)) and list(first) != list(range(11))


@pytest.mark.parametrize("workers", [1, 3])
def test_resume_across_an_epoch_end(encoded_db, workers):
    l = layer(encoded_db, workers=workers, prefetch=3)
    reader = l.make_state(np.random.default_rng(2))
    batches(reader, l.top_shapes, 2)  # 8 of 11 items; the reader has read 3 batches ahead
    state = reader.get_state()
    assert int(state["cursor"]) == 8 and int(state["epoch"]) == 0
    want = batches(reader, l.top_shapes, 6)  # crosses two epoch ends
    fresh = l.make_state(np.random.default_rng(99))
    fresh.set_state(state)
    assert batches(fresh, l.top_shapes, 6) == want
    reader.set_state(state)  # a running reader drops what it read ahead
    assert batches(reader, l.top_shapes, 6) == want
    cpu = layer(encoded_db, workers=0).make_state(np.random.default_rng(7))
    cpu.set_state(state)
    assert batches(cpu, l.top_shapes, 6) == want


def test_an_error_in_a_worker_reaches_the_caller(tmp_path):
    records = [(b"%08d" % i, datum_bytes(label=i, encoded=jpeg(i))) for i in range(6)]
    records[4] = (b"00000004", datum_bytes(label=4, encoded=b"not an image"))
    path = write_lmdb(tmp_path / "db", records)
    l = layer(path, workers=2, shuffle=False)
    reader = l.make_state(np.random.default_rng(0))
    batches(reader, l.top_shapes, 1)
    with pytest.raises(TrainnetError, match="key '00000004': not a readable image"):
        batches(reader, l.top_shapes, 1)


def test_sampler_shuffles_blocks_and_within_blocks():
    sampler = Sampler(10, np.random.default_rng(3), shuffle=True, blocks=[4, 6])
    for _ in range(4):
        epoch = sampler.next_indices(10)
        assert sorted(epoch) == list(range(10))
        first = set(epoch[:4]) if epoch[0] < 4 else set(epoch[:6])
        assert first in ({0, 1, 2, 3}, {4, 5, 6, 7, 8, 9})  # one file's items together
    with pytest.raises(ValueError, match="blocks of 9 items"):
        Sampler(10, np.random.default_rng(), blocks=[4, 5])


@pytest.mark.parametrize("bad, message", [
    ({"perm": np.arange(10)[::-1].copy() % 9}, "not a permutation"),
    ({"perm": np.arange(-1, 10)}, "not a permutation"),
    ({"cursor": np.array(10)}, "cursor 10 out of range"),
    ({"rng": np.frombuffer(b"{}", np.uint8)}, "bad random generator state"),
])
def test_damaged_states_are_refused(bad, message):
    sampler = Sampler(10, np.random.default_rng(0))
    with pytest.raises(TrainnetError, match=message):
        sampler.set_state({**sampler.get_state(), **bad})


def test_gpu_staging_gives_the_cpu_batches(encoded_db, gpu_device):
    """Decoded records through pinned buffers and the side stream: the CPU reader's batches,
    and a state that resumes them."""
    from trainnet.layers.base import StepIO

    l = layer(encoded_db, workers=2)
    want = batches(l.make_state(np.random.default_rng(8)), l.top_shapes, 7)
    state = l.make_state(np.random.default_rng(8), gpu_device)
    tops = [gpu_device.zeros(s, np.float32) for s in l.top_shapes]
    io = StepIO(bottom=[], top=tops, bottom_diff=[], top_diff=[None, None], params=[],
                param_diff=[], state=state, gpu=gpu_device.backend)
    got = []
    for k in range(7):
        if k == 3:
            saved = state.get_state()
        l.forward(io, gpu_device)
        got.append(tuple(gpu_device.to_host(t).tobytes() for t in tops))
    assert got == want
    state.set_state(saved)
    l.forward(io, gpu_device)
    assert tuple(gpu_device.to_host(t).tobytes() for t in tops) == want[3]
