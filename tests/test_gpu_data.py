"""The Data layer on a GPU: batches staged through pinned buffers and a side stream.

The GPU path must hand the net exactly the CPU reader's batch sequence (across epochs, with
shuffling, crops and mirrors), and its state must describe the batches the net consumed, not
the one read ahead, so that a snapshot resumes the same sequence.
"""

import numpy as np
import pytest

from synthetic import write_dataset
from trainnet.layers.base import StepIO, layer_class
from trainnet.data.pipeline import BatchReader
from trainnet.layers.data_base import StagedReader
from trainnet.netcfg.common import TransformationParameter
from trainnet.netcfg.net import LayerConfig
from trainnet.runtime.device import GpuDevice

BATCH = 100  # the synthetic train split holds 384 items: an epoch ends inside batch 4


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINNET_DATA", str(tmp_path))
    write_dataset(tmp_path / "syn")
    return tmp_path


def data_layer(transform=None, **params):
    cls = layer_class("Data")
    p = cls.Params.model_validate({"source": "syn/train-images-idx3-ubyte.gz",
                                   "batch_size": BATCH, "shuffle": True, **params})
    common = LayerConfig(name="data", type="Data", top=["data", "label"], params=p,
                         transform_param=TransformationParameter(**(transform or {})))
    return cls("data", p, "TRAIN", [], common=common)


def cpu_batches(reader: BatchReader, layer, count):
    out = []
    for _ in range(count):
        data, label = (np.empty(s, np.float32) for s in layer.top_shapes)
        reader.next_batch(data, label)
        out.append((data, label))
    return out


def gpu_io(layer, device, state) -> StepIO:
    tops = [device.zeros(s, np.float32) for s in layer.top_shapes]
    return StepIO(bottom=[], top=tops, bottom_diff=[], top_diff=[None] * len(tops), params=[],
                  param_diff=[], state=state, gpu=device.backend)


def gpu_batches(layer, device, io, count):
    out = []
    for _ in range(count):
        layer.forward(io, device)
        out.append(tuple(device.to_host(t) for t in io.top))
    return out


def assert_same(got, want):
    assert len(got) == len(want)
    for k, ((d0, l0), (d1, l1)) in enumerate(zip(got, want)):
        assert d0.tobytes() == d1.tobytes() and l0.tobytes() == l1.tobytes(), f"batch {k} differs"


TRANSFORMS = [{"scale": 0.00390625}, {"crop_size": 6, "mirror": True, "mean_value": 100.0}]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_gpu_batches_equal_cpu_batches(dataset, gpu_device, transform):
    layer = data_layer(transform)
    want = cpu_batches(layer.make_state(np.random.default_rng(4)), layer, 9)  # over 2 epochs
    state = layer.make_state(np.random.default_rng(4), gpu_device)
    assert isinstance(state, StagedReader)
    got = gpu_batches(layer, gpu_device, gpu_io(layer, gpu_device, state), 9)
    assert_same(got, want)
    labels = np.concatenate([l for _, l in want])
    assert sorted(labels[:384]) != list(labels[:384])  # shuffled, so the check means something


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_state_resumes_the_sequence(dataset, gpu_device, transform):
    layer = data_layer(transform)
    cpu = layer.make_state(np.random.default_rng(1))
    want = cpu_batches(cpu, layer, 12)
    state = layer.make_state(np.random.default_rng(1), gpu_device)
    io = gpu_io(layer, gpu_device, state)
    assert_same(gpu_batches(layer, gpu_device, io, 5), want[:5])
    saved = state.get_state()  # after 5 batches consumed, though 6 were read
    probe = layer.make_state(np.random.default_rng(1))
    cpu_batches(probe, layer, 5)
    for key, value in probe.get_state().items():
        np.testing.assert_array_equal(saved[key], value, err_msg=key)
    assert_same(gpu_batches(layer, gpu_device, io, 4), want[5:9])
    assert state.get_state()["cursor"] == probe.get_state()["cursor"] + 4 * BATCH - 384

    # a new GPU reader resumes from the snapshot, as does a running one, and a CPU reader
    fresh = layer.make_state(np.random.default_rng(99), gpu_device)
    fresh.set_state(saved)
    assert_same(gpu_batches(layer, gpu_device, gpu_io(layer, gpu_device, fresh), 7), want[5:])
    state.set_state(saved)
    assert_same(gpu_batches(layer, gpu_device, io, 7), want[5:])
    on_cpu = layer.make_state(np.random.default_rng(98))
    on_cpu.set_state(saved)
    assert_same(cpu_batches(on_cpu, layer, 7), want[5:])


def test_state_before_the_first_batch(dataset, gpu_device):
    layer = data_layer()
    state = layer.make_state(np.random.default_rng(2), gpu_device)
    reader = layer.make_state(np.random.default_rng(2))
    for key, value in reader.get_state().items():
        np.testing.assert_array_equal(state.get_state()[key], value)


class Event:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def synchronize(self):
        self.log.append(("host_wait", self.name))

    def __repr__(self):
        return self.name


class StreamLog:
    """Wraps the emulated backend: events become names and every stream call is logged."""

    def __init__(self, inner):
        self.inner, self.log, self.count = inner, [], 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _event(self, kind):
        self.count += 1
        return Event(self.log, f"{kind}{self.count}")

    def upload_side(self, dst, host, after=None):
        self.inner.upload_side(dst, host)
        event = self._event("up")
        self.log.append(("upload_side", dst.shape, str(after), event))
        return event

    def record(self):
        event = self._event("rec")
        self.log.append(("record", event))
        return event

    def wait(self, event):
        self.log.append(("wait", event))

    def host_wait(self, event):
        if event is not None:
            event.synchronize()

    def copy(self, dst, src):
        self.inner.copy(dst, src)
        self.log.append(("copy", dst.shape))


def test_stream_protocol(dataset):
    """Wait for the upload, copy out, record; then refill the other pinned buffer once its last
    upload has left it and queue the upload after the device has consumed that staging buffer."""
    from emulation.backend import EmulatedBackend, compiler
    if not compiler():
        pytest.skip("no C++ compiler")
    backend = StreamLog(EmulatedBackend())
    device = GpuDevice(backend, "cuda:log")
    layer = data_layer()
    state = layer.make_state(np.random.default_rng(0), device)
    io = gpu_io(layer, device, state)
    # nothing is read or uploaded before the first forward; the staging buffers' zero-fill
    # (compute stream) is marked, and their first uploads (side stream) wait for it
    assert [tuple(map(str, e)) for e in backend.log] == [("record", "rec1")]
    d, l = (BATCH, 1, 8, 8), (BATCH,)

    def forward():
        backend.log.clear()
        layer.forward(io, device)
        return [tuple(str(x) if isinstance(x, Event) else x for x in e) for e in backend.log]

    assert forward() == [("upload_side", d, "rec1", "up2"), ("upload_side", l, "None", "up3"),
                         ("wait", "up3"), ("copy", d), ("copy", l), ("record", "rec4"),
                         ("upload_side", d, "rec1", "up5"), ("upload_side", l, "None", "up6")]
    assert forward() == [("wait", "up6"), ("copy", d), ("copy", l), ("record", "rec7"),
                         ("host_wait", "up3"),
                         ("upload_side", d, "rec4", "up8"), ("upload_side", l, "None", "up9")]
    assert forward() == [("wait", "up9"), ("copy", d), ("copy", l), ("record", "rec10"),
                         ("host_wait", "up6"),
                         ("upload_side", d, "rec7", "up11"), ("upload_side", l, "None", "up12")]
