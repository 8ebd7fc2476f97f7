"""Dropout: inverted scaling in TRAIN with a counter-based (Philox) mask, identity in TEST;
the Philox generator against Random123's known answers, in NumPy and in common.cuh; CPU/GPU
parity of the masks, of a replayed graph and of the TEST phase."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity
from layer_cases import Case, layer_tests, normal
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import TrainnetError
from trainnet.layers import dropout as dropout_module
from trainnet.layers.rng import PhiloxWork, fill_uniform, philox4x32, philox4x32_block, uniform24
from trainnet.runtime.device import CPU

F = 0xFFFFFFFF
# Random123 kat_vectors, "philox4x32 10": counter (4 words), key (2 words) -> output (4 words)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((F, F, F, F), (F, F), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def draws(shape, counter, key):
    """The layer's uniforms for one pass, computed element by element from the definition."""
    i = np.arange(int(np.prod(shape)), dtype=np.uint64)
    bits = philox4x32(i & np.uint64(F), i >> np.uint64(32), counter & F, counter >> 32,
                      key & F, key >> 32)
    return uniform24(bits).reshape(shape)


# --- the generator ---------------------------------------------------------------------------

@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_known_answers(counter, key, expected):
    assert [int(w) for w in philox4x32_block(*counter, *key)] == list(expected)
    assert int(philox4x32(*counter, *key)) == expected[0]


def test_philox_vectorized_matches_scalar():
    c0 = np.array([0, 1, F, 0x243F6A88], np.uint64)
    got = philox4x32(c0, 7, 0x13198A2E, F, 0xA4093822, 0x299F31D0)
    assert got.dtype == np.uint32
    assert [int(g) for g in got] == [int(philox4x32(int(c), 7, 0x13198A2E, F, 0xA4093822,
                                                    0x299F31D0)) for c in c0]


def test_uniform24_exact_and_in_range():
    u = uniform24(np.array([0, 0xFF, 0x100, F], np.uint32))
    assert u.dtype == np.float32
    assert list(u) == [0.0, 0.0, 2.0**-24, 1.0 - 2.0**-24]


def test_fill_uniform_chunks_and_high_words():
    key, counter = 0xFEEDFACE12345678, (3 << 32) + 9
    out = np.empty((5, 7, 11), np.float32)
    fill_uniform(out, counter, key, PhiloxWork(64))  # several blocks of 64
    np.testing.assert_array_equal(out, draws(out.shape, counter, key))
    assert 0.0 <= out.min() and out.max() < 1.0


def test_common_cuh_known_answers(tmp_path):
    """``philox4x32`` in common.cuh, compiled for the host as the emulated GPU compiles it."""
    from emulation.backend import EmulatedBackend, compiler
    if not compiler():
        pytest.skip("no C++ compiler")
    source = tmp_path / "philox_kat.cu"
    source.write_text('#include "common.cuh"\n'
                      'extern "C" __global__ void kat(u32* out, const u32* in, i64 n) {\n'
                      '    GRID_STRIDE(i, n) {\n'
                      '        const u32* v = in + 6 * i;\n'
                      '        out[i] = philox4x32(v[0], v[1], v[2], v[3], v[4], v[5]);\n'
                      '    }\n'
                      '}\n')
    inputs = np.array([c + k for c, k, _ in KAT], np.uint32)
    out = np.zeros(len(KAT), np.uint32)
    EmulatedBackend().launch(source, "kat", len(KAT), out, inputs, np.int64(len(KAT)))
    assert [int(v) for v in out] == [e[0] for _, _, e in KAT]


# --- the layer -------------------------------------------------------------------------------

def test_train_matches_reference_mask():
    x = np.random.default_rng(5).normal(size=(4, 6)).astype(np.float32)
    layer = build("Dropout", {"dropout_ratio": 0.3}, [x.shape])
    io = make_io(layer, [x], seed=7)
    key = int(io.state.key[0])
    assert key == int(np.random.default_rng(7).integers(0, 2**64, dtype=np.uint64))
    for c in range(3):  # each pass draws a new mask from counter c
        layer.forward(io, CPU)
        keep = draws(x.shape, c, key) >= np.float32(0.3)
        scale = np.float32(1 / 0.7)
        np.testing.assert_array_equal(io.top[0], np.where(keep, x * scale, np.float32(0)))
        io.top_diff[0][...] = 1.0
        layer.backward(io, CPU)
        np.testing.assert_array_equal(io.bottom_diff[0], keep * scale)
        assert int(io.state.counter[0]) == c + 1


def test_masks_differ_between_passes_and_keys():
    x = np.ones((40, 50), np.float32)
    layer = build("Dropout", {}, [x.shape])
    io = make_io(layer, [x], seed=1)
    layer.forward(io, CPU)
    first = io.top[0].copy()
    layer.forward(io, CPU)
    assert not np.array_equal(first, io.top[0])
    other = run_forward(layer, [x], seed=2).top[0]
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(first, run_forward(layer, [x], seed=1).top[0])


def test_keep_fraction_and_mean():
    x = np.ones((200, 500), np.float32)
    io = run_forward(build("Dropout", {"dropout_ratio": 0.25}, [x.shape]), [x])
    assert np.mean(io.top[0] > 0) == pytest.approx(0.75, abs=0.01)
    assert float(io.top[0].mean()) == pytest.approx(1.0, abs=0.02)


def test_in_place():
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    layer = build("Dropout", {}, [x.shape])
    ref = run_forward(layer, [x.copy()]).top[0]
    io = make_io(layer, [x])
    io.top[0] = io.bottom[0]
    layer.forward(io, CPU)
    np.testing.assert_array_equal(x, ref)


def test_state_round_trip_resumes_the_masks():
    x = np.ones((6, 7), np.float32)
    layer = build("Dropout", {"dropout_ratio": 0.4}, [x.shape])
    io = make_io(layer, [x], seed=3)
    layer.forward(io, CPU)
    layer.forward(io, CPU)
    state = io.state.get_state()
    assert set(state) == {"key", "counter"} and int(state["counter"][0]) == 2
    assert all(v.dtype == np.uint64 and v.shape == (1,) for v in state.values())
    layer.forward(io, CPU)
    expect = io.top[0].copy()
    other = make_io(layer, [x], seed=99)
    other.state.set_state(state)
    layer.forward(other, CPU)
    np.testing.assert_array_equal(other.top[0], expect)
    with pytest.raises(TrainnetError, match="lacks counter"):
        other.state.set_state({"key": state["key"]})
    with pytest.raises(TrainnetError, match="one uint64"):
        other.state.set_state({**state, "counter": np.zeros(2, np.uint64)})


def test_test_phase_is_identity():
    x = np.random.default_rng(0).normal(size=(3, 5))
    layer = build("Dropout", {"dropout_ratio": 0.9}, [x.shape], phase="TEST")
    assert layer.buffers() == {}
    assert layer.make_state(np.random.default_rng(0)) is None
    np.testing.assert_array_equal(run_forward(layer, [x]).top[0], x)


def test_no_scale_train():
    x = np.ones((2, 3))
    train = run_forward(build("Dropout", {"scale_train": False}, [x.shape]), [x]).top[0]
    assert set(np.unique(train)) <= {0.0, 1.0}
    test = run_forward(build("Dropout", {"scale_train": False}, [x.shape], phase="TEST"), [x])
    np.testing.assert_allclose(test.top[0], 0.5)


class FrozenState(dropout_module.DropoutState):
    """Draws the same mask on every pass, for the gradient checker's repeated forwards."""

    @property
    def counter(self):
        return np.zeros(1, np.uint64)

    @counter.setter
    def counter(self, value):
        pass


def test_gradients(monkeypatch):
    monkeypatch.setattr(dropout_module, "DropoutState", FrozenState)
    check_gradients(build("Dropout", {"dropout_ratio": 0.4}, [(3, 4)]),
                    [np.random.default_rng(1).normal(size=(3, 4))])


def test_ratio_must_be_below_one():
    with pytest.raises(ValidationError, match="less than 1"):
        build("Dropout", {"dropout_ratio": 1.0}, [(2, 2)])


# --- CPU/GPU parity ----------------------------------------------------------------------------

CASES = [Case("Dropout", {"dropout_ratio": ratio, "scale_train": scale_train}, [normal((3, 8), 2)],
              phase="TEST", gpu_rtol=0, passes=2) for ratio, scale_train in [(0.5, True), (0.25, False)]]
globals().update(layer_tests(CASES))


@pytest.mark.parametrize("ratio, scale_train", [(0.5, True), (0.3, False)])
def test_gpu_train_draws_the_cpu_masks(gpu_device, ratio, scale_train):
    """Philox masks: the same units dropped on CPU and GPU, and a new mask every pass."""
    rng = np.random.default_rng(0)
    layer = build("Dropout", {"dropout_ratio": ratio, "scale_train": scale_train}, [(4, 3, 5, 7)])
    cpu, gpu = check_parity(layer, [rng.normal(size=(4, 3, 5, 7))], gpu_device, rtol=0, passes=3)
    np.testing.assert_array_equal(gpu_device.to_host(gpu.buf["mask"]), cpu.buf["mask"])
    assert int(cpu.state.counter[0]) == int(gpu_device.to_host(gpu.state.counter)[0]) == 3
    assert gpu.state.get_state()["key"] == cpu.state.get_state()["key"]


def test_gpu_graph_replay_draws_new_masks(gpu_device):
    """The pass counter lives in device memory: a replayed capture advances it."""
    rng = np.random.default_rng(1)
    layer = build("Dropout", {}, [(6, 50)])
    cpu, gpu = check_parity(layer, [rng.normal(size=(6, 50))], gpu_device, rtol=0)
    graph = gpu_device.backend.capture(lambda: layer.forward(gpu, gpu_device))
    for _ in range(2):
        graph.replay()
        layer.forward(cpu, CPU)
        np.testing.assert_array_equal(gpu_device.to_host(gpu.top[0]), cpu.top[0])
