import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """Where the real datasets are: TRAINNET_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("TRAINNET_DATA")
    if env:
        return Path(env)
    guess = ROOT.parent / "shared" / "data"
    return guess if guess.is_dir() else None


@pytest.fixture
def mnist_dir() -> Path:
    """The MNIST folder; skips outside CI when absent, fails under CI=true."""
    root = data_root()
    path = root / "mnist" if root else None
    if path is None or not (path / "train-images-idx3-ubyte.gz").is_file():
        msg = "MNIST not found: set TRAINNET_DATA to a folder holding mnist/*.gz"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path
