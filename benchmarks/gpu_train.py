"""Training throughput on one GPU: trainnet against PyTorch (eager, and torch.compile where
it works), the same nets, batches and update, in one run.

    python benchmarks/gpu_train.py [--iterations 300] [--data ../shared/data] [--tf32]

Cases: Caffe's LeNet on MNIST at batch 64 and 1024, and Caffe's CIFAR-10 "quick" net at
batch 256 (CIFAR-10 is written to IDX files in a temporary folder so trainnet's Data layer
reads it).  trainnet runs its real training step (``Solver.step_once``: host batch gather and
upload on the side stream, one CUDA graph replay, the loss read back for the log).  PyTorch
gets the dataset preprocessed in pinned host memory and copies a batch per iteration with
``non_blocking=True``, and does not read the loss back: both choices favour the peer.
Update: SGD, momentum 0.9, weight decay 5e-4, lr 0.01, lr_mult 2 on biases (as the configs).

Prints images/s per framework, the ratios, and peak GPU memory (trainnet: bytes held in
CuPy's pool, i.e. the arenas; PyTorch: torch.cuda.max_memory_allocated).  Neither counts the
cuBLAS workspace or the CUDA context.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300, help="timed iterations per case")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="timed repeats; the median is reported")
    ap.add_argument("--data", default=os.environ.get("TRAINNET_DATA", str(ROOT.parent / "shared/data")))
    ap.add_argument("--tf32", action="store_true", help="TF32 GEMMs on both sides")
    ap.add_argument("--cases", default="lenet64,lenet1024,cifar_quick256")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    return ap.parse_args()


CASES = {"lenet64": 64, "lenet1024": 1024, "cifar_quick256": 256}  # name -> batch size


def conv(name, bottom, n, k, pad=0, filler=("xavier", None)):
    weight = {"type": filler[0]} if filler[1] is None else {"type": filler[0], "std": filler[1]}
    return {"name": name, "type": "Convolution", "bottom": bottom, "top": name,
            "param": [{"lr_mult": 1}, {"lr_mult": 2}], "num_output": n, "kernel_size": k,
            "pad": pad, "weight_filler": weight, "bias_filler": {"type": "constant"}}


def pool(name, bottom, kind, k, s):
    return {"name": name, "type": "Pooling", "bottom": bottom, "top": name, "pool": kind,
            "kernel_size": k, "stride": s}


def ip(name, bottom, n):
    return {"name": name, "type": "InnerProduct", "bottom": bottom, "top": name,
            "param": [{"lr_mult": 1}, {"lr_mult": 2}], "num_output": n,
            "weight_filler": {"type": "xavier"}, "bias_filler": {"type": "constant"}}


def relu(name, blob):
    return {"name": name, "type": "ReLU", "bottom": blob, "top": blob}


def trainnet_net(case, source, batch, scale, mean):
    transform = {"scale": scale} if mean is None else {"scale": scale, "mean_value": mean}
    data = {"name": "data", "type": "Data", "top": ["data", "label"], "source": source,
            "batch_size": batch, "shuffle": True, "transform_param": transform}
    if case.startswith("lenet"):
        body = [conv("conv1", "data", 20, 5), pool("pool1", "conv1", "MAX", 2, 2),
                conv("conv2", "pool1", 50, 5), pool("pool2", "conv2", "MAX", 2, 2),
                ip("ip1", "pool2", 500), relu("relu1", "ip1"), ip("ip2", "ip1", 10)]
    else:
        body = [conv("conv1", "data", 32, 5, 2), pool("pool1", "conv1", "MAX", 3, 2),
                relu("relu1", "pool1"), conv("conv2", "pool1", 32, 5, 2), relu("relu2", "conv2"),
                pool("pool2", "conv2", "AVE", 3, 2), conv("conv3", "pool2", 64, 5, 2),
                relu("relu3", "conv3"), pool("pool3", "conv3", "AVE", 3, 2),
                ip("ip1", "pool3", 64), ip("ip2", "ip1", 10)]
    loss = {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["ip2", "label"], "top": "loss"}
    return {"name": case, "layer": [data, *body, loss]}


def torch_net(case):
    import torch.nn as nn
    if case.startswith("lenet"):
        return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2), nn.Conv2d(20, 50, 5),
                             nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                             nn.Linear(500, 10))
    return nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
                         nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
                         nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.Linear(64, 10))


def datasets(data_root: Path, tmp: Path, names: set) -> dict:
    """(images uint8 NCHW, labels) per dataset in ``names``, and IDX files trainnet's Data layer
    reads (only the datasets the cases use are read: a GPU machine may have MNIST alone)."""
    from trainnet.data.idx import read_idx, write_idx
    found = {}
    if "mnist" in names:
        mnist = read_idx(data_root / "mnist/train-images-idx3-ubyte.gz")[:, None]
        mnist_labels = read_idx(data_root / "mnist/train-labels-idx1-ubyte.gz")
        found["mnist"] = (mnist, mnist_labels, str(data_root / "mnist/train-images-idx3-ubyte.gz"))
    if "cifar" in names:
        raw = np.concatenate([np.fromfile(data_root / f"cifar10/data_batch_{i}.bin", np.uint8)
                              .reshape(-1, 3073) for i in range(1, 6)])
        cifar, cifar_labels = raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].copy()
        write_idx(tmp / "cifar-images-idx3-ubyte", cifar)
        write_idx(tmp / "cifar-labels-idx1-ubyte", cifar_labels)
        found["cifar"] = (cifar, cifar_labels, str(tmp / "cifar-images-idx3-ubyte"))
    return found


def time_loop(step, sync, iterations, warmup, rounds) -> float:
    """Median seconds per iteration over ``rounds`` runs of ``iterations`` steps."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(iterations):
            step()
        sync()
        times.append((time.perf_counter() - t) / iterations)
    return statistics.median(times)


def run_trainnet(case, batch, data, tmp, args):
    import cupy
    from trainnet.netcfg import load_solver
    from trainnet.runtime.device import get_device
    from trainnet.solver.solver import Solver

    dataset = "mnist" if case.startswith("lenet") else "cifar"
    mean = None if dataset == "mnist" else [125.3, 123.0, 113.9]
    scale = 0.00390625 if dataset == "mnist" else 1.0
    net = trainnet_net(case, data[dataset][2], batch, scale, mean)
    (tmp / f"{case}.yaml").write_text(yaml.safe_dump(net))
    (tmp / f"{case}_solver.yaml").write_text(yaml.safe_dump(
        {"net": f"{case}.yaml", "base_lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
         "lr_policy": "fixed", "max_iter": 10**9, "display": 0, "snapshot": 0,
         "snapshot_after_train": False, "random_seed": 1, "snapshot_prefix": str(tmp / case)}))
    pool = cupy.get_default_memory_pool()
    before = pool.total_bytes()
    device = get_device("cuda", tf32=args.tf32)
    solver = Solver(load_solver(tmp / f"{case}_solver.yaml"), device)
    seconds = time_loop(solver.step_once, device.synchronize, args.iterations, args.warmup, args.rounds)
    return seconds, pool.total_bytes() - before, solver.losses[-1]


def run_torch(case, batch, data, args, compiled):
    import torch
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    dataset = "mnist" if case.startswith("lenet") else "cifar"
    images, labels, _ = data[dataset]
    x_all = torch.from_numpy(images.astype(np.float32))
    if dataset == "cifar":
        x_all -= torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1)
    else:
        x_all *= 0.00390625
    x_all, y_all = x_all.pin_memory(), torch.from_numpy(labels.astype(np.int64)).pin_memory()
    torch.manual_seed(1)
    model = torch_net(case).cuda()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "lr": 0.01},
                           {"params": no_decay, "lr": 0.02}], momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    fwd = torch.compile(model) if compiled else model
    n, cursor = len(x_all) - batch, [0]
    torch.cuda.reset_peak_memory_stats()

    def step():
        i = cursor[0]
        cursor[0] = (i + batch) % n
        x = x_all[i:i + batch].to("cuda", non_blocking=True)
        y = y_all[i:i + batch].to("cuda", non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(fwd(x), y)
        loss.backward()
        opt.step()

    seconds = time_loop(step, torch.cuda.synchronize, args.iterations, args.warmup, args.rounds)
    return seconds, torch.cuda.max_memory_allocated()


def main():
    args = parse_args()
    from trainnet.runtime.device import gpu_count
    if not gpu_count():
        sys.exit("benchmarks/gpu_train.py needs a CUDA GPU (and CuPy); none is visible here")
    import torch
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cases = args.cases.split(",")
        data = datasets(Path(args.data), tmp, {"mnist" if c.startswith("lenet") else "cifar" for c in cases})
        for case in cases:
            batch = CASES[case]
            t_ours, mem_ours, loss = run_trainnet(case, batch, data, tmp, args)
            t_eager, mem_eager = run_torch(case, batch, data, args, compiled=False)
            t_comp, mem_comp, note = None, None, ""
            if not args.no_compile:
                try:
                    t_comp, mem_comp = run_torch(case, batch, data, args, compiled=True)
                except Exception as exc:  # report, don't hide: the row says why
                    note = f"torch.compile failed: {type(exc).__name__}: {str(exc)[:80]}"
            rows.append((case, batch, t_ours, t_eager, t_comp, mem_ours, mem_eager, mem_comp, loss, note))
    print(f"\ndevice: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"tf32 {'on' if args.tf32 else 'off'}  iterations {args.iterations} x {args.rounds} rounds (median)")
    print(f"{'case':<16}{'trainnet img/s':>15}{'torch img/s':>13}{'compile img/s':>15}"
          f"{'vs eager':>10}{'vs compile':>12}{'mem ours':>10}{'mem eager':>11}{'mem compile':>13}")
    for case, batch, t_ours, t_eager, t_comp, m_ours, m_eager, m_comp, loss, note in rows:
        ips = lambda t: batch / t  # noqa: E731
        comp = f"{ips(t_comp):>15,.0f}" if t_comp else f"{'n/a':>15}"
        vs_comp = f"{t_comp / t_ours:>11.2f}x" if t_comp else f"{'n/a':>12}"
        mib = lambda b: f"{b / 2**20:.1f}M" if b is not None else "n/a"  # noqa: E731
        print(f"{case:<16}{ips(t_ours):>15,.0f}{ips(t_eager):>13,.0f}{comp}{t_eager / t_ours:>9.2f}x"
              f"{vs_comp}{mib(m_ours):>10}{mib(m_eager):>11}{mib(m_comp):>13}")
        if note:
            print(f"  {case}: {note}")


if __name__ == "__main__":
    main()
