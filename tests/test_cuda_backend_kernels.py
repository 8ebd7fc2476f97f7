"""Kernel details of the CUDA path checked on the emulated backend (they need no GPU)."""

import numpy as np
import pytest

from trainnet.kernels import sources as K

EMBED = K.INCLUDE_DIR.parent / "layers" / "embed.cu"


@pytest.fixture
def emulated():
    from emulation.backend import EmulatedBackend, compiler
    if not compiler():
        pytest.skip("no GCC C++ compiler for the emulated GPU")
    return EmulatedBackend()


def test_embed_clamps_its_index_in_integers_past_2_to_the_24(emulated):
    """(float)(K - 1) rounds up to K for K = 2^24 + 4: the clamp must not leave the table."""
    rows = 2**24 + 4
    w = np.zeros(rows + 64, np.float32)  # the table, then a guard band a bad index would read
    w[rows:] = np.nan
    w[rows - 1], w[0], w[3] = 7.0, 1.0, 3.0
    x = np.array([1e9, 2.0**24 + 8, -5.0, np.nan, 3.7], np.float32)
    y = np.full(x.size, -1.0, np.float32)
    emulated.launch(EMBED, "embed_forward", y.size, y, x, w, w, np.int32(0), np.int64(rows),
                    np.int64(1), np.int64(y.size))
    assert y.tolist() == [7.0, 7.0, 1.0, 1.0, 3.0]
