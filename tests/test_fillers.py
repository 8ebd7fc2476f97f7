"""Fillers: Caffe's formulas for each type, checked by their statistics on large blobs."""

import math

import numpy as np
import pytest

from trainnet.layers.fillers import fill
from trainnet.netcfg.common import FillerParameter

SHAPE = (64, 32, 5, 5)  # fan_in 800, fan_out 1600


def filled(shape=SHAPE, **kw):
    out = np.empty(shape, np.float32)
    fill(out, FillerParameter(**kw), np.random.default_rng(0))
    return out


def test_constant():
    assert (filled(type="constant", value=0.25) == 0.25).all()
    assert (filled(type="constant") == 0).all()


def test_uniform_and_gaussian():
    u = filled(type="uniform", min=-2, max=3)
    assert u.min() >= -2 and u.max() <= 3 and u.mean() == pytest.approx(0.5, abs=0.05)
    g = filled(type="gaussian", mean=1, std=0.5)
    assert g.mean() == pytest.approx(1, abs=0.01) and g.std() == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("norm, n", [("FAN_IN", 800), ("FAN_OUT", 1600), ("AVERAGE", 1200)])
def test_xavier_and_msra_scale_by_fan(norm, n):
    x = filled(type="xavier", variance_norm=norm)
    scale = math.sqrt(3 / n)
    assert np.abs(x).max() <= scale and np.abs(x).max() > 0.99 * scale
    assert x.std() == pytest.approx(scale / math.sqrt(3), rel=0.02)
    m = filled(type="msra", variance_norm=norm)
    assert m.std() == pytest.approx(math.sqrt(2 / n), rel=0.02)


def test_gaussian_sparse_keeps_about_sparse_per_output():
    g = filled(shape=(100, 400), type="gaussian", std=1, sparse=10)
    assert (g != 0).mean() == pytest.approx(10 / 100, abs=0.01)


def test_positive_unitball_rows_sum_to_one():
    p = filled(shape=(8, 3, 2, 2), type="positive_unitball")
    assert (p >= 0).all()
    np.testing.assert_allclose(p.reshape(8, -1).sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_bilinear_matches_caffes_loop(k):
    f = math.ceil(k / 2)
    c = (k - 1) / (2 * f)
    expected = np.array([[(1 - abs(x / f - c)) * (1 - abs(y / f - c)) for x in range(k)] for y in range(k)])
    b = filled(shape=(2, 1, k, k), type="bilinear")
    np.testing.assert_allclose(b[1, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(b[:, :, ::-1, ::-1], b, rtol=1e-6)  # symmetric


def test_fillers_refuse_shapes_they_cannot_fill():
    from trainnet.netcfg import load_net_text
    from trainnet.plan import compile_net
    from trainnet.errors import ConfigError

    text = """
layer:
  - {name: in, type: Input, top: x, shape: {dim: [2, 3]}}
  - {name: ip, type: InnerProduct, bottom: x, top: y, num_output: 2, bias_filler: {type: bilinear}}
"""
    with pytest.raises(ConfigError, match=r"g.yaml:4: layer 'ip' \(InnerProduct\): parameter 1: the "
                                          r"bilinear filler needs a 4-D blob with square kernels"):
        compile_net(load_net_text(text, "g.yaml"), "TRAIN")
    assert filled(shape=(0, 3), type="xavier").size == 0  # an empty blob has nothing to fill


def test_fill_is_deterministic_for_a_seed():
    np.testing.assert_array_equal(filled(type="xavier"), filled(type="xavier"))
