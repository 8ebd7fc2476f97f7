"""Write layer-by-layer reference outputs of zoo nets at random weights, computed by PyTorch.

An implementation independent of trainnet: it never imports trainnet.  It reads the zoo YAML
with ``yaml.safe_load`` (the layers' parameters sit on each layer, defaults as in Caffe's
caffe.proto), runs every layer with torch ops in float64 on the CPU following Caffe's
semantics, and writes ``tests/reference/NAME.safetensors`` holding, for every blob, its value
after the last layer that writes it (what trainnet's blob holds after a forward): the whole
blob for small nets, else a fixed random sample of positions, plus every output in full.

Weights and the input come from ``draw`` below (numpy, one generator per blob, seeded by the
net's seed and the blob's position in ``metadata["params"]``); tests/test_references.py repeats
that recipe to give trainnet the same weights.  BatchNorm's running statistics are drawn around
the statistics of the blob they normalise (``batch_norm_blob``), so they are stored; small nets
store all their weights and the input.

    python tests/reference/make_references.py            # every net
    python tests/reference/make_references.py lenet      # some
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
ZOO = HERE.parents[1] / "trainnet" / "zoo" / "nets"

# net -> (seed, input standard deviation, classifier gain).  The input scale is large enough that
# LRN's normalising term matters (a few percent at the first LRN), as mean-subtracted pixels
# make it; the net's last weight (its classifier) is He normal times the gain, chosen so that
# the logits have an rms of a few units: the softmax is then neither one-hot nor flat.
NETS = {
    "lenet": (101, 1.0, 1.0),
    "cifar10_full": (102, 10.0, 0.25),
    "caffenet": (103, 10.0, 1 / 16),
    "googlenet": (104, 10.0, 1 / 32),
    "resnet50": (105, 10.0, 2.0),
    "squeezenet_v1_1": (106, 10.0, 1 / 8),
    "mobilenet_v1": (107, 10.0, 2.0),
}
FULL_BLOBS = 200_000   # a net whose blobs hold at most this many values in all stores them whole
SAVE_WEIGHTS = 100_000  # ... and its weights when it has at most this many
SAMPLES = 256          # positions stored per blob otherwise
BN_FACTOR = 2.0        # BatchNorm's third blob: mean and variance are stored times it


def draw(seed: int, i: int, kind: str, shape: tuple[int, ...], input_std: float,
         gain: float) -> np.ndarray:
    """Blob ``i`` of a net (0 is the input), float32.  The same recipe is in test_references.py."""
    rng = np.random.default_rng([seed, i])
    fan_in = math.prod(shape[1:])
    value = {
        "input": lambda: rng.standard_normal(shape) * input_std,
        "weight": lambda: rng.standard_normal(shape) * math.sqrt(2.0 / fan_in),  # He normal
        "classifier": lambda: rng.standard_normal(shape) * math.sqrt(2.0 / fan_in) * gain,
        "bias": lambda: rng.normal(0.0, 0.1, shape),
        "gamma": lambda: rng.uniform(0.5, 1.5, shape),
        "beta": lambda: rng.normal(0.0, 0.1, shape),
    }[kind]()
    return np.asarray(value, dtype=np.float32)


def batch_norm_blob(seed: int, i: int, kind: str, x: torch.Tensor) -> np.ndarray:
    """A BatchNorm blob: the running mean or variance times BN_FACTOR, drawn around the
    statistics of its input ``x`` (mean + N(0, 1) std, var * U(0.5, 2)) as a trained net's
    running averages differ from one image's, or the factor.  Without this the activations of
    a deep net grow block after block; it depends on the forward, so the file stores them.
    (With means within 0.1 std instead, a correct fp32 forward - torch's - is already 1.2e-4
    off at res5 of ResNet-50: no room for the test's tolerance.)"""
    if kind == "bn_factor":
        return np.full((1,), BN_FACTOR, dtype=np.float32)
    rng = np.random.default_rng([seed, i])
    dims = [0] + list(range(2, x.dim()))
    mean, var = x.mean(dims).numpy(), x.var(dims, unbiased=False).numpy()
    if kind == "bn_mean":
        value = mean + rng.normal(0.0, 1.0, mean.shape) * np.sqrt(var)
    else:
        value = var * rng.uniform(0.5, 2.0, var.shape) + 1e-3
    return np.asarray(value * BN_FACTOR, dtype=np.float32)


# --- Caffe's layers in torch ------------------------------------------------------------------
def pair(p: dict, name: str, default: int | None) -> tuple[int, int]:
    """A spatial field as Caffe reads it: ``name_h``/``name_w``, else ``name`` (one value or
    one per axis, ``kernel_size`` for the kernel), else ``default``."""
    if f"{name}_h" in p or f"{name}_w" in p:
        return int(p[f"{name}_h"]), int(p[f"{name}_w"])
    v = p.get("kernel_size" if name == "kernel" else name, default)
    if v is None:
        raise ValueError(f"missing {name}")
    v = v if isinstance(v, list) else [v]
    if not v:
        return default, default
    return (int(v[0]), int(v[-1]))


def convolution(p, x, w, b):
    kh, kw = pair(p, "kernel", None)
    assert w.shape[2:] == (kh, kw)
    return F.conv2d(x, w, b, stride=pair(p, "stride", 1), padding=pair(p, "pad", 0),
                    dilation=pair(p, "dilation", 1), groups=int(p.get("group", 1)))


def pool_geometry(p, x):
    if p.get("global_pooling", False):
        return x.shape[2:], (0, 0), (1, 1)
    return pair(p, "kernel", None), pair(p, "pad", 0), pair(p, "stride", 1)


def pooling(p, x):
    """torch's ceil_mode drops a last window starting in the padding, as Caffe does, and its
    count_include_pad average divides by the window clipped to H + pad, as Caffe does: both
    checked against ``caffe_pooling_loops`` in ``check_torch``.  torch also drops such a window
    without padding (stride > kernel), where Caffe keeps an empty one: refused below."""
    k, pad, s = pool_geometry(p, x)
    ceil = p.get("round_mode", "CEIL") == "CEIL"
    if p.get("pool", "MAX") == "MAX":
        y = F.max_pool2d(x, k, s, pad, ceil_mode=ceil)
    elif p.get("pool") == "AVE":
        y = F.avg_pool2d(x, k, s, pad, ceil_mode=ceil, count_include_pad=True)
    else:
        raise NotImplementedError(f"pool {p.get('pool')}")
    for size, kk, pp, ss, got in zip(x.shape[2:], k, pad, s, y.shape[2:]):
        out = (math.ceil if ceil else math.floor)((size + 2 * pp - kk) / ss) + 1
        if pp and (out - 1) * ss >= size + pp:
            out -= 1
        assert got == out, f"torch pools {size} to {got}, Caffe to {out}"
    return y


def lrn(p, x):
    n, alpha = int(p.get("local_size", 5)), float(p.get("alpha", 1.0))
    beta = float(p.get("beta", 0.75))
    if p.get("norm_region", "ACROSS_CHANNELS") == "ACROSS_CHANNELS":
        # scale_c = k + alpha/n * sum of x^2 over channels c - (n-1)/2 .. c - (n-1)/2 + n - 1
        pre = (n - 1) // 2
        sq = F.pad(x * x, (0, 0, 0, 0, pre, n - 1 - pre))
        total = sum(sq[:, i:i + x.shape[1]] for i in range(n))
        return x * (float(p.get("k", 1.0)) + alpha / n * total) ** -beta
    # WITHIN_CHANNEL: Caffe's split -> power(x^2) -> AVE pool n x n, pad (n-1)/2 -> power(shift 1,
    # scale alpha, power -beta) -> product; k is not used
    avg = F.avg_pool2d(x * x, n, 1, (n - 1) // 2, ceil_mode=True, count_include_pad=True)
    return x * (1.0 + alpha * avg) ** -beta


def batch_norm(p, x, mean, var, factor):
    eps = float(p.get("eps", 1e-5))
    if p.get("use_global_stats", True):
        f = 0.0 if float(factor[0]) == 0 else 1.0 / float(factor[0])
        mean, var = mean * f, var * f
    else:
        dims = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
    shape = [1, -1] + [1] * (x.dim() - 2)
    return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps)


def scale_shape(p, x):
    axis = int(p.get("axis", 1)) % x.dim()
    num_axes = int(p.get("num_axes", 1))
    end = x.dim() if num_axes == -1 else axis + num_axes
    return axis, tuple(x.shape[axis:end])


def scale(p, x, gamma, beta=None):
    axis, shape = scale_shape(p, x)
    view = [1] * axis + list(shape) + [1] * (x.dim() - axis - len(shape))
    y = x * gamma.view(view)
    return y if beta is None else y + beta.view(view)


def eltwise(p, xs):
    op = p.get("operation", "SUM")
    if op == "SUM":
        coeff = p.get("coeff") or [1.0] * len(xs)
        return sum(c * x for c, x in zip(coeff, xs))
    if op == "PROD":
        return math.prod(xs[1:], start=xs[0])
    if op == "MAX":
        return torch.stack(xs).amax(0)
    raise NotImplementedError(op)


def inner_product(p, x, w, b):
    axis = int(p.get("axis", 1))
    flat = x.reshape(math.prod(x.shape[:axis]), -1)
    y = flat @ (w if p.get("transpose", False) else w.T)
    if b is not None:
        y = y + b
    return y.reshape(*x.shape[:axis], y.shape[-1])


def param_kinds(t: str, p: dict, x) -> list[tuple[str, tuple[int, ...]]]:
    """The parameter blobs of a layer with first bottom ``x``, in Caffe's order: (kind, shape)."""
    if t == "Convolution":
        kh, kw = pair(p, "kernel", None)
        out = [("weight", (int(p["num_output"]), x.shape[1] // int(p.get("group", 1)), kh, kw))]
        return out + ([("bias", (int(p["num_output"]),))] if p.get("bias_term", True) else [])
    if t == "InnerProduct":
        n, k = int(p["num_output"]), math.prod(x.shape[int(p.get("axis", 1)):])
        out = [("weight", (k, n) if p.get("transpose", False) else (n, k))]
        return out + ([("bias", (n,))] if p.get("bias_term", True) else [])
    if t == "BatchNorm":
        return [("bn_mean", (x.shape[1],)), ("bn_var", (x.shape[1],)), ("bn_factor", (1,))]
    if t == "Scale":
        shape = scale_shape(p, x)[1]
        return [("gamma", shape)] + ([("beta", shape)] if p.get("bias_term", False) else [])
    return []


def forward_layer(t: str, p: dict, xs: list, params: list):
    x = xs[0] if xs else None
    if t == "Convolution":
        return [convolution(p, x, params[0], params[1] if len(params) > 1 else None)]
    if t == "InnerProduct":
        return [inner_product(p, x, params[0], params[1] if len(params) > 1 else None)]
    if t == "Pooling":
        return [pooling(p, x)]
    if t == "LRN":
        return [lrn(p, x)]
    if t == "ReLU":
        slope = float(p.get("negative_slope", 0.0))
        return [torch.where(x > 0, x, x * slope)]
    if t == "Dropout":  # inverted dropout: the identity at TEST
        return [x.clone()]
    if t == "BatchNorm":
        return [batch_norm(p, x, *params)]
    if t == "Scale":
        if len(xs) == 2:
            return [scale(p, x, xs[1])]
        return [scale(p, x, *params)]
    if t == "Eltwise":
        return [eltwise(p, xs)]
    if t == "Concat":
        return [torch.cat(xs, dim=int(p.get("axis", p.get("concat_dim", 1))))]
    if t == "Softmax":
        return [torch.softmax(x, dim=int(p.get("axis", 1)))]
    if t == "Flatten":
        return [x.flatten(int(p.get("axis", 1)), int(p.get("end_axis", -1)))]
    raise NotImplementedError(f"layer type {t}")


COMMON = {"name", "type", "bottom", "top", "param", "loss_weight", "propagate_down", "phase",
          "weight_filler", "bias_filler", "filler", "engine"}


def as_list(v) -> list:
    return [] if v is None else v if isinstance(v, list) else [v]


def run_net(name: str, seed: int, input_std: float, gain: float):
    """Forward the zoo net ``name`` in float64; returns (blobs by name after the net, the
    blob names in first-write order, the output names, the params listing, weights by key,
    the input)."""
    cfg = yaml.safe_load((ZOO / f"{name}.yaml").read_text())
    blobs: dict[str, torch.Tensor] = {}
    order: list[str] = []
    listing, weights = [], {}
    consumed = set()
    data = None
    last_weight = [l["name"] for l in cfg["layer"]
                   if l["type"] in ("Convolution", "InnerProduct")][-1]
    for layer in cfg["layer"]:
        assert "include" not in layer and "exclude" not in layer, "phase rules are not handled"
        t, p = layer["type"], {k: v for k, v in layer.items() if k not in COMMON}
        bottoms, tops = as_list(layer.get("bottom")), as_list(layer.get("top"))
        consumed.update(b for b in bottoms if b not in tops)  # in place: still an output
        if t == "Input":
            shape = tuple(p["shape"]["dim"])
            data = draw(seed, 0, "input", shape, input_std, gain)
            listing.append(["input", tops[0], list(shape)])
            blobs[tops[0]] = torch.from_numpy(data).double()
            continue
        xs = [blobs[b] for b in bottoms]
        params = []
        for j, (kind, shape) in enumerate(param_kinds(t, p, xs[0])):
            key = f"{layer['name']}.{j}"
            if kind == "weight" and layer["name"] == last_weight:
                kind = "classifier"
            if kind.startswith("bn_"):
                w = batch_norm_blob(seed, len(listing), kind, xs[0])
            else:
                w = draw(seed, len(listing), kind, shape, input_std, gain)
            listing.append([kind, key, list(shape)])
            weights[key] = w
            params.append(torch.from_numpy(w).double())
        for top, y in zip(tops, forward_layer(t, p, xs, params)):
            if top not in blobs:
                order.append(top)
            blobs[top] = y
    outputs = [b for b in order if b not in consumed]
    return cfg, blobs, order, outputs, listing, weights, data


def write_reference(name: str) -> Path:
    seed, input_std, gain = NETS[name]
    cfg, blobs, order, outputs, listing, weights, data = run_net(name, seed, input_std, gain)
    total = sum(blobs[b].numel() for b in order)
    full = total <= FULL_BLOBS
    n_weights = sum(w.size for w in weights.values())
    tensors: dict[str, np.ndarray] = {}
    sampler = np.random.default_rng([seed, 2**31])
    for b in order:
        value = blobs[b].numpy().astype(np.float32)
        if full or b in outputs or value.size <= SAMPLES:
            tensors[f"full/{b}"] = value
        else:
            index = np.sort(sampler.choice(value.size, SAMPLES, replace=False)).astype(np.int64)
            tensors[f"index/{b}"] = index
            tensors[f"value/{b}"] = value.reshape(-1)[index]
    stored = [key for kind, key, _ in listing if kind != "input"
              and (n_weights <= SAVE_WEIGHTS or kind.startswith("bn_"))]
    if n_weights <= SAVE_WEIGHTS:
        tensors["input"] = data
    tensors.update({f"param/{k}": weights[k] for k in stored})
    metadata = {
        "net": name, "net_name": str(cfg.get("name", "")), "seed": str(seed),
        "input_std": repr(input_std), "classifier_gain": repr(gain), "bn_factor": repr(BN_FACTOR),
        "torch": torch.__version__, "numpy": np.__version__,
        "date": datetime.date.today().isoformat(),
        "computed": "float64 on the CPU, stored as float32",
        "params": json.dumps(listing), "blobs": json.dumps(order), "outputs": json.dumps(outputs),
    }
    path = HERE / f"{name}.safetensors"
    save_file(tensors, str(path), metadata)
    rms = {b: float(blobs[b].pow(2).mean().sqrt()) for b in order}
    print(f"{name}: {len(order)} blobs ({total:,} values, {'whole' if full else 'sampled'}), "
          f"{n_weights:,} weights ({len(stored)} of {len(weights)} blobs stored), "
          f"{path.stat().st_size / 1e3:.0f} kB; rms min {min(rms.values()):.3g} max "
          f"{max(rms.values()):.3g}; outputs {outputs}")
    return path


# --- checks of torch against Caffe's definitions -----------------------------------------------
def caffe_pooling_loops(x: np.ndarray, k: int, s: int, pad: int, mode: str) -> np.ndarray:
    """Caffe's PoolingLayer (round_mode CEIL) written as its loops, one image one channel."""
    H, W = x.shape
    out = []
    for size in (H, W):
        o = math.ceil((size + 2 * pad - k) / s) + 1
        if pad and (o - 1) * s >= size + pad:
            o -= 1
        out.append(o)
    y = np.zeros(out)
    for ph in range(out[0]):
        for pw in range(out[1]):
            hs, ws = ph * s - pad, pw * s - pad
            if mode == "MAX":
                he, we = min(hs + k, H), min(ws + k, W)
                y[ph, pw] = x[max(hs, 0):he, max(ws, 0):we].max()
            else:
                he, we = min(hs + k, H + pad), min(ws + k, W + pad)
                size = (he - hs) * (we - ws)
                y[ph, pw] = x[max(hs, 0):min(he, H), max(ws, 0):min(we, W)].sum() / size
    return y


def check_torch() -> None:
    """torch's pooling and LRN against Caffe's definitions, on the geometries of the zoo nets
    and every input size modulo the stride; stops on a difference."""
    rng = np.random.default_rng(0)
    for k, s, pad in [(2, 2, 0), (3, 2, 0), (3, 2, 1), (3, 1, 1), (7, 1, 0), (3, 3, 1), (5, 3, 2)]:
        for size in range(k, k + 2 * s + 3):
            x = rng.standard_normal((size, size + 1))
            for mode in ("MAX", "AVE"):
                want = caffe_pooling_loops(x, k, s, pad, mode)
                got = pooling({"pool": mode, "kernel_size": k, "stride": s, "pad": pad},
                              torch.from_numpy(x)[None, None])[0, 0].numpy()
                assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-12), \
                    (k, s, pad, size, mode, got.shape, want.shape)
    x = torch.from_numpy(rng.standard_normal((2, 7, 4, 5)) * 10)
    for n in (3, 5):
        p = {"local_size": n, "alpha": 1e-3, "beta": 0.75, "k": 2.0}
        want = np.empty(x.shape)
        xn = x.numpy()
        for c in range(7):
            lo, hi = max(c - (n - 1) // 2, 0), min(c - (n - 1) // 2 + n, 7)
            want[:, c] = xn[:, c] * (2.0 + 1e-3 / n * (xn[:, lo:hi] ** 2).sum(1)) ** -0.75
        assert np.allclose(lrn(p, x).numpy(), want, rtol=1e-12)
        # torch's own local_response_norm uses the same alpha/n for an odd size
        assert np.allclose(F.local_response_norm(x, n, 1e-3, 0.75, 2.0).numpy(), want, rtol=1e-12)
        p["norm_region"] = "WITHIN_CHANNEL"
        r = (n - 1) // 2
        sq = np.pad(xn ** 2, ((0, 0), (0, 0), (r, r), (r, r)))
        avg = sum(sq[:, :, i:i + 4, j:j + 5] for i in range(n) for j in range(n)) / n ** 2
        assert np.allclose(lrn(p, x).numpy(), xn * (1 + 1e-3 * avg) ** -0.75, rtol=1e-12)


def main(names: list[str]) -> None:
    torch.set_grad_enabled(False)
    check_torch()
    for name in names or list(NETS):
        write_reference(name)


if __name__ == "__main__":
    main(sys.argv[1:])
