"""Time one LeNet training iteration (batch 64: forward + backward + SGD update) on the CPU,
for trainnet and for PyTorch with the same thread count, in one run; print the ratio.

    python benchmarks/lenet_cpu.py [--threads 2] [--iterations 300]

Both get the same random batch each iteration (data loading is not timed), the same net
(Caffe's LeNet: conv 20 5x5, max pool, conv 50 5x5, max pool, ip 500, relu, ip 10,
softmax loss) and the same update (SGD, momentum 0.9, weight decay 5e-4, lr_mult 2 on biases).
Rounds alternate between the two so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iterations", type=int, default=300, help="timed iterations per framework")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    return ap.parse_args()


ARGS = parse_args()
# BLAS thread pools read these when NumPy/PyTorch load.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from trainnet.netcfg import load_net_text  # noqa: E402
from trainnet.netcfg.solver import SolverConfig  # noqa: E402
from trainnet.plan import compile_net  # noqa: E402
from trainnet.runtime.net import Net  # noqa: E402
from trainnet.solver.update import SGD  # noqa: E402

BATCH = 64


def trainnet_lenet():
    """The shipped LeNet config with its TRAIN data layer swapped for an Input layer."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs/lenet/lenet_train_test.yaml").read_text())
    layers = [l for l in cfg["layer"] if l["type"] != "Data"]
    layers.insert(0, {"name": "input", "type": "Input", "top": ["data", "label"],
                      "shape": [{"dim": [BATCH, 1, 28, 28]}, {"dim": [BATCH]}]})
    cfg["layer"] = layers
    net = Net(compile_net(load_net_text(yaml.safe_dump(cfg)), "TRAIN"), rng=np.random.default_rng(0))
    solver = SolverConfig(net="-", base_lr=0.01, momentum=0.9, weight_decay=5e-4)
    rule = SGD(solver, *net.params.multipliers())
    x, y = net.data("data"), net.data("label")

    def step(images, labels):
        x[...] = images
        y[...] = labels
        net.forward_backward()
        rule.apply(net.params.data, net.params.diff, 0.01, 0)

    return step


def torch_lenet():
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(inplace=True), nn.Linear(500, 10))
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.SGD([{"params": weights}, {"params": biases, "lr": 0.02, "weight_decay": 5e-4}],
                          lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step(images, labels):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(torch.from_numpy(images)), torch.from_numpy(labels).long())
        loss.backward()
        opt.step()

    return step


def timed(step, batches, n) -> float:
    """Seconds per iteration over ``n`` iterations."""
    t = time.perf_counter()
    for i in range(n):
        step(*batches[i % len(batches)])
    return (time.perf_counter() - t) / n


def main():
    torch.set_num_threads(ARGS.threads)
    rng = np.random.default_rng(0)
    batches = [(rng.random((BATCH, 1, 28, 28), dtype=np.float32),
                rng.integers(0, 10, BATCH).astype(np.float32)) for _ in range(16)]
    steps = {"trainnet": trainnet_lenet(), "pytorch": torch_lenet()}
    for step in steps.values():
        timed(step, batches, 20)  # warm up
    results = {k: [] for k in steps}
    per_round = max(1, ARGS.iterations // ARGS.rounds)
    for _ in range(ARGS.rounds):
        for name, step in steps.items():
            results[name].append(timed(step, batches, per_round))
    med = {k: statistics.median(v) * 1e3 for k, v in results.items()}
    print(f"LeNet training iteration, batch {BATCH}, CPU, {ARGS.threads} threads "
          f"(numpy {np.__version__}, torch {torch.__version__}, python {sys.version.split()[0]})")
    for name, ms in med.items():
        print(f"  {name:<9} {ms:7.2f} ms/iter  (median of {ARGS.rounds} rounds x {per_round} iterations)")
    ratio = med["trainnet"] / med["pytorch"]
    print(f"  ratio trainnet/pytorch = {ratio:.2f}  ({'faster' if ratio < 1 else 'slower'} than PyTorch)")
    print(f"  projected 10000 iterations: trainnet {med['trainnet'] * 10:.0f} s, "
          f"pytorch {med['pytorch'] * 10:.0f} s (without testing)")


if __name__ == "__main__":
    main()
