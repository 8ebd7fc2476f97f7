"""A small learnable dataset written as IDX files, for fast solver and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainnet.data.idx import write_idx

CLASSES = 4
SIZE = 8


def write_dataset(folder: Path, n: int = 512, seed: int = 0) -> None:
    """Images whose brightest quadrant is the label, with noise: learnable in a few hundred steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n).astype(np.uint8)
    images = rng.integers(0, 80, (n, SIZE, SIZE)).astype(np.uint8)
    half = SIZE // 2
    for q in range(CLASSES):
        r, c = divmod(q, 2)
        images[labels == q, r * half:(r + 1) * half, c * half:(c + 1) * half] += 150
    folder.mkdir(parents=True, exist_ok=True)
    for split, (lo, hi) in (("train", (0, n * 3 // 4)), ("test", (n * 3 // 4, n))):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images[lo:hi])
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels[lo:hi])


NET = """
name: Tiny
layer:
  - {name: data, type: Data, top: [data, label], include: {phase: TRAIN},
     transform_param: {scale: 0.00390625}, source: train-images-idx3-ubyte.gz, batch_size: 16,
     shuffle: true}
  - {name: data, type: Data, top: [data, label], include: {phase: TEST},
     transform_param: {scale: 0.00390625}, source: test-images-idx3-ubyte.gz, batch_size: 32}
  - {name: conv1, type: Convolution, bottom: data, top: conv1, num_output: 4, kernel_size: 3,
     weight_filler: {type: xavier}, param: [{lr_mult: 1}, {lr_mult: 2}]}
  - {name: pool1, type: Pooling, bottom: conv1, top: pool1, pool: MAX, kernel_size: 2, stride: 2}
  - {name: ip1, type: InnerProduct, bottom: pool1, top: ip1, num_output: 16,
     weight_filler: {type: xavier}}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: drop1, type: Dropout, bottom: ip1, top: ip1, dropout_ratio: 0.2}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 4,
     weight_filler: {type: xavier}}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], top: accuracy, include: {phase: TEST}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""

SOLVER = """
net: net.yaml
test_iter: 4
test_interval: 50
base_lr: 0.05
momentum: 0.9
weight_decay: 0.0005
lr_policy: inv
gamma: 0.0001
power: 0.75
display: 10
max_iter: {max_iter}
snapshot: {snapshot}
snapshot_prefix: {prefix}
random_seed: 7
"""


def write_project(folder: Path, max_iter: int = 100, snapshot: int = 0, prefix: str = "out/tiny") -> Path:
    """A dataset, net and solver in ``folder``; returns the solver path."""
    write_dataset(folder)
    (folder / "net.yaml").write_text(NET)
    solver = folder / "solver.yaml"
    solver.write_text(SOLVER.format(max_iter=max_iter, snapshot=snapshot, prefix=folder / prefix))
    return solver
