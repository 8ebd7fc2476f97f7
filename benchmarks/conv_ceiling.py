"""How fast can an im2col + BLAS convolution be, against PyTorch's own convolution, in one run?

For each convolution of a zoo net's training iteration (the shapes trainnet's CPU path hands to
BLAS: forward ``W (M x K) @ columns (K x N)``, the weight gradient ``dY (M x N) @ columns.T`` and
the columns' gradient ``W.T @ dY``), this times NumPy's matmul (the BLAS NumPy is built with) on
exactly those shapes, with no im2col or col2im at all: the floor under any convolution that goes
through this BLAS.  Beside it, PyTorch's F.conv2d forward and forward + backward on the same
layer, on the same threads.  Where the three GEMMs alone take longer than PyTorch's whole
forward + backward, no rearrangement of the copies around them can close the gap.

    python benchmarks/conv_ceiling.py [--threads 2] [--net cifar10_quick] [--batch 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--net", default="cifar10_quick", help="a zoo net (trainnet/zoo/nets)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    return ap.parse_args(argv)


def best(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls after one warm-up, in ms."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def convolutions(net: str, batch: int):
    """(name, N, C, H, W, conv layer) for each plain convolution (no groups) of the zoo net."""
    from trainnet.layers.convolution import Convolution
    from trainnet import zoo  # noqa: F401  (registers zoo:NAME)
    from trainnet.netcfg import load_net
    from trainnet.plan import compile_net

    plan = compile_net(load_net(f"zoo:{net}"), "TEST", backward=False)
    for step in plan.steps:
        layer = step.layer
        if isinstance(layer, Convolution) and layer.p.group == 1:
            yield step.name, layer


def main(argv=None) -> None:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"{args.net}, batch {args.batch}, {args.threads} threads; ms, best of {args.repeats}")
    print("layer    GEMM shapes (M x K x N)          3 GEMMs  GFLOP/s  torch fwd  torch fwd+bwd  ratio")
    for name, conv in convolutions(args.net, 1):
        m, k, n = conv.p.num_output, conv.ckk, args.batch * conv.Ho * conv.Wo
        w, cols, dy = (rng.standard_normal(s, dtype=np.float32) for s in ((m, k), (k, n), (m, n)))
        out, dw, dcols = np.empty((m, n), np.float32), np.empty((m, k), np.float32), np.empty((k, n), np.float32)

        def gemms():
            np.matmul(w, cols, out=out)
            np.matmul(dy, cols.T, out=dw)
            np.matmul(w.T, dy, out=dcols)
        t_gemm = best(gemms, args.repeats)
        x = torch.randn(args.batch, conv.C, conv.H, conv.W, requires_grad=True)
        wt = torch.randn(m, conv.C, conv.kh, conv.kw, requires_grad=True)
        b = torch.randn(m, requires_grad=True)
        geometry = dict(stride=(conv.sh, conv.sw), padding=(conv.ph, conv.pw), dilation=(conv.dh, conv.dw))
        y = F.conv2d(x, wt, b, **geometry)
        g = torch.randn_like(y)
        t_fwd = best(lambda: F.conv2d(x, wt, b, **geometry), args.repeats)
        t_all = best(lambda: torch.autograd.grad(F.conv2d(x, wt, b, **geometry), (x, wt, b), g),
                     args.repeats)
        print(f"{name:8s} {m:4d} x {k:5d} x {n:8d}          {t_gemm:8.1f}  {6 * m * k * n / t_gemm / 1e6:7.0f}"
              f"  {t_fwd:9.1f}  {t_all:13.1f}  {t_gemm / t_all:5.2f}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    main()
