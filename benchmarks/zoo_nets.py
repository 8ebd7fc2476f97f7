"""Zoo nets against PyTorch in one run: same net (from the same YAML), weights and inputs.

Inference at batch 1 and at a larger batch, and a training iteration, on the CPU or one GPU.

    python benchmarks/zoo_nets.py [--device cpu|cuda] [--threads 2] [--nets lenet,resnet50]
                                  [--train-nets lenet,mobilenet_v1] [--repeats 5] [--compile]

Cases per net in ``--nets``: forward-only inference at batch 1 and at ``--batch`` (default 256
for lenet and the CIFAR-10 nets, 16 for the ImageNet nets); per net in ``--train-nets``: one
training iteration (forward + backward, no update) at that larger batch, the zoo net compiled
for TRAIN with its Input layer given a label top and its final Softmax replaced by
SoftmaxWithLoss.  Inputs stay in device memory; trainnet copies the batch into its input blob
each pass (its plan reuses that memory), PyTorch reads it in place.

The PyTorch peer is built here from the same YAML, reusing the layer functions (and their
checks of Caffe's pooling geometry) of tests/reference/make_references.py, the independent
interpreter that made the reference outputs, in float32, with PyTorch's fused ops where a
PyTorch user would write them: F.conv2d/F.linear with bias, F.relu in place where the YAML runs
it in place, F.batch_norm with the following Scale folded in (nn.BatchNorm2d(affine=True)),
F.local_response_norm, F.cross_entropy.  Weights follow make_references.run_net's recipe
(He-normal weights, BatchNorm statistics drawn around those of the blob they normalise, so deep
nets stay in range) with the classifier rescaled to logits of rms 3; a batch is the reference
input plus 1% noise, labels are random.  Before timing, the outputs must agree (relative L2
error): the probabilities (inference), or the loss and the classifier's weight gradient
(training; dropout at ratio 0 for this check only) within 1e-3, and the first layer's weight
gradient within 5e-2 (see TOLERANCE).  torch.compile (``--compile``) is checked the same way.
Rows are timed in alternating rounds (trainnet, torch, ...), each round at least
``--round-time`` seconds after ``--warmup`` passes; the median of ``--repeats`` rounds is
reported, with the CPU cores other processes kept busy meanwhile.

Memory: trainnet's figure is the compiled plan's activation arena, ``plan.arena_bytes`` (blobs,
gradients and layer buffers: forward-only plan for inference; for training plus the
parameter-gradient arena).  PyTorch's on the CPU is the rise of the peak resident set size over
one pass after a warm-up pass (gradients set to None first), measured in a child process with
glibc's mmap threshold fixed at 64 KiB (MALLOC_MMAP_THRESHOLD_) so that freed large blocks go
back to the system: every activation, gradient and op scratch buffer alive at the peak.  On a
GPU: torch.cuda.max_memory_allocated over one pass minus what was allocated before it (no cuDNN
or cuBLAS workspace outside PyTorch's allocator).  Neither counts the parameters.  Blocks under
64 KiB come from glibc's heap and may not show, so tiny figures (lenet at batch 1) read as ~0.

``--device cuda`` runs trainnet on the GPU with its forward (and the training iteration)
replayed as a CUDA graph, torch eager (cuDNN benchmark mode) on the same GPU, synchronising both
at the end of each round; ``--tf32`` allows TF32 on both.
``--device emulated`` runs that GPU code path on tests/emulation's CPU backend, to check this
script without a GPU; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETS_DIR = ROOT / "trainnet" / "zoo" / "nets"
SMALL_INPUT = {"lenet", "cifar10_quick", "cifar10_full"}  # their large batch is 256, others 16
TRAIN_NETS = "lenet,cifar10_quick,squeezenet_v1_1,mobilenet_v1,resnet50,googlenet"
# Relative L2 errors allowed between the two.  Float32 against float64 alone gives 5e-3 to 2e-2
# at the first layer of ResNet-50 and MobileNet at random weights, in either framework (ReLU
# kinks and max-pool near-ties flip under rounding): that gradient only has to be close.
TOLERANCE = {"output": 1e-3, "classifier grad": 1e-3, "first grad": 5e-2}
LOGIT_RMS = 3.0
NOISE = 0.01  # of the batch around the reference input


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "emulated"])
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="CPU threads for both (BLAS/OpenMP pools, torch.set_num_threads)")
    ap.add_argument("--nets", default=",".join(sorted(p.stem for p in NETS_DIR.glob("*.yaml"))),
                    help="zoo nets timed for inference (default: every zoo net)")
    ap.add_argument("--train-nets", default=TRAIN_NETS, help="zoo nets timed for training ('' for none)")
    ap.add_argument("--batch", type=int, default=None, help="the larger batch (default 256 or 16)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per framework (median reported)")
    ap.add_argument("--round-time", type=float, default=0.3, help="least seconds per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed passes before the rounds")
    ap.add_argument("--no-batch1", action="store_true", help="skip inference at batch 1")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor)")
    ap.add_argument("--no-memory", action="store_true", help="skip PyTorch's memory measurement")
    ap.add_argument("--tf32", action="store_true", help="TF32 GEMMs and convolutions on both sides (GPU)")
    ap.add_argument("--torch-memory", metavar="NET:BATCH:PASS", help=argparse.SUPPRESS)  # the child's job
    return ap.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    # BLAS and OpenMP thread pools read these when NumPy/PyTorch load.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))              # emulation.backend, for --device emulated
sys.path.insert(0, str(ROOT / "tests" / "reference"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402

import make_references as ref  # noqa: E402
from trainnet.errors import TrainnetError  # noqa: E402
from trainnet.netcfg import load_net_text  # noqa: E402
from trainnet.plan import compile_net  # noqa: E402
from trainnet.runtime.net import Net  # noqa: E402


# --- the nets -----------------------------------------------------------------------------------
def zoo_config(name: str) -> dict:
    return yaml.safe_load((NETS_DIR / f"{name}.yaml").read_text())


def large_batch(name: str, args) -> int:
    return args.batch or (256 if name in SMALL_INPUT else 16)


def variant(cfg: dict, batch: int, train: bool, dropout: float | None = None) -> dict:
    """The zoo net at ``batch``; for training with a label input and SoftmaxWithLoss in place of
    the final Softmax; with every Dropout at ``dropout`` when given."""
    cfg = copy.deepcopy(cfg)
    layers = cfg["layer"]
    source, last = layers[0], layers[-1]
    assert source["type"] == "Input" and last["type"] == "Softmax", cfg["name"]
    dims = [batch] + list(source["shape"]["dim"][1:])
    source["shape"] = {"dim": dims}
    if train:
        source["top"] = [ref.as_list(source["top"])[0], "label"]
        source["shape"] = [{"dim": dims}, {"dim": [batch]}]
        layers[-1] = {"name": "loss", "type": "SoftmaxWithLoss", "bottom": [last["bottom"], "label"],
                      "top": "loss"}
    for layer in layers:
        if layer["type"] == "Dropout" and dropout is not None:
            layer["dropout_ratio"] = dropout
    return cfg


def reference_weights(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Weights by key (``conv1.0``) and a batch-1 input, by make_references.run_net's recipe
    (float64 forward at batch 1 for BatchNorm's statistics; nets it has no entry for get a seed
    of their own), the classifier scaled so that the logits' rms is LOGIT_RMS: a softmax far
    from one-hot, whose loss Caffe's FLT_MIN clamp leaves alone, and gradients that float32
    carries to the first layer."""
    zoo = sorted(p.stem for p in NETS_DIR.glob("*.yaml"))
    seed, std, gain = ref.NETS.get(name, (200 + zoo.index(name), 10.0, 1 / 8))
    with torch.no_grad():
        cfg, blobs, _, _, _, weights, data = ref.run_net(name, seed, std, gain)
    logits = blobs[cfg["layer"][-1]["bottom"]]
    classifier = [l["name"] for l in cfg["layer"] if l["type"] in ("Convolution", "InnerProduct")][-1]
    scale = LOGIT_RMS / float(logits.pow(2).mean().sqrt())  # ReLU and pooling after it commute
    for key in (f"{classifier}.0", f"{classifier}.1"):
        if key in weights:
            weights[key] = (weights[key] * scale).astype(np.float32)
    return weights, data


def inputs(cfg: dict, batch: int, data: np.ndarray, seed: int = 0):
    """A batch: the reference input plus NOISE times its std of noise (images far from it may
    give large logits: BatchNorm's statistics are drawn around its own), and random labels."""
    rng = np.random.default_rng(seed)
    x = data + NOISE * data.std() * rng.standard_normal((batch, *data.shape[1:]))
    classes = next(l["num_output"] for l in reversed(cfg["layer"]) if "num_output" in l)
    return x.astype(np.float32), rng.integers(0, classes, batch)


# --- PyTorch ------------------------------------------------------------------------------------
def pooling_op(p, x):
    """torch pooling with the geometry make_references.pooling checked against Caffe's."""
    ref.pooling(p, x)  # its assertion: torch's window count is Caffe's for this input
    k, pad, s = ref.pool_geometry(p, x)
    ceil = p.get("round_mode", "CEIL") == "CEIL"
    if p.get("pool", "MAX") == "MAX":
        return functools.partial(F.max_pool2d, kernel_size=k, stride=s, padding=pad, ceil_mode=ceil)
    return functools.partial(F.avg_pool2d, kernel_size=k, stride=s, padding=pad, ceil_mode=ceil,
                             count_include_pad=True)


class TorchNet(torch.nn.Module):
    """A zoo net config run layer by layer with torch ops on ``device`` (float32 unless told)."""

    def __init__(self, cfg: dict, weights: dict[str, np.ndarray], device: str, train: bool,
                 dtype=torch.float32):
        super().__init__()
        self.train_mode, self.dtype = train, dtype
        self.learned = torch.nn.ParameterList()
        self.by_key: dict[str, torch.Tensor] = {}
        self.ops: list[tuple] = []           # (fn(list of bottoms) -> top, bottoms, top)
        layers = cfg["layer"]
        self.input = ref.as_list(layers[0]["top"])[0]
        shape = layers[0]["shape"]
        shape = (shape[0] if isinstance(shape, list) else shape)["dim"]
        blobs = {self.input: torch.zeros([1] + list(shape[1:]), device=device, dtype=dtype)}  # shapes only
        blobs["label"] = torch.zeros(1, dtype=torch.long, device=device)
        folded = set()
        for i, layer in enumerate(layers[1:], 1):
            if layer["name"] in folded:
                continue
            t, p = layer["type"], {k: v for k, v in layer.items() if k not in ref.COMMON}
            bottoms, top = ref.as_list(layer.get("bottom")), ref.as_list(layer["top"])[0]
            x = blobs[bottoms[0]]
            params = [self.tensor(f"{layer['name']}.{j}", weights, device, kind)
                      for j, (kind, _) in enumerate(ref.param_kinds(t, p, x))]
            after = layers[i + 1] if i + 1 < len(layers) else {}
            if t == "BatchNorm" and after.get("type") == "Scale" and ref.as_list(after["bottom"]) == [top]:
                # nn.BatchNorm2d(affine=True): the Scale's gamma and beta go into F.batch_norm
                q = {k: v for k, v in after.items() if k not in ref.COMMON}
                assert int(q.get("axis", 1)) == 1 and int(q.get("num_axes", 1)) == 1
                params += [self.tensor(f"{after['name']}.{j}", weights, device, kind)
                           for j, (kind, _) in enumerate(ref.param_kinds("Scale", q, x))]
                folded.add(after["name"])
                top = ref.as_list(after["top"])[0]
            fn = self.op(t, p, params, x, in_place=top in bottoms)
            with torch.no_grad():
                blobs[top] = fn([blobs[b] for b in bottoms])
            self.ops.append((fn, bottoms, top))
        self.output = self.ops[-1][2]

    def tensor(self, key: str, weights: dict, device: str, kind: str) -> torch.Tensor:
        t = torch.from_numpy(np.asarray(weights[key])).to(device, self.dtype)
        if not kind.startswith("bn_"):  # BatchNorm's statistics are not learned
            t = torch.nn.Parameter(t, requires_grad=self.train_mode)
            self.learned.append(t)
        self.by_key[key] = t
        return t

    def op(self, t: str, p: dict, params: list, x, in_place: bool):
        """A closure computing the layer's top from its bottoms."""
        if t == "Convolution":
            bias = params[1] if len(params) > 1 else None
            conv = functools.partial(F.conv2d, weight=params[0], bias=bias,
                                     stride=ref.pair(p, "stride", 1), padding=ref.pair(p, "pad", 0),
                                     dilation=ref.pair(p, "dilation", 1), groups=int(p.get("group", 1)))
            return lambda xs: conv(xs[0])
        if t == "InnerProduct" and not p.get("transpose", False):
            axis, w, b = int(p.get("axis", 1)), params[0], params[1] if len(params) > 1 else None
            return lambda xs: F.linear(xs[0].flatten(axis), w, b)
        if t == "Pooling":
            pool = pooling_op(p, x)
            return lambda xs: pool(xs[0])
        if t == "ReLU":
            slope = float(p.get("negative_slope", 0.0))
            if slope:
                return lambda xs: F.leaky_relu(xs[0], slope, inplace=in_place)
            return lambda xs: F.relu(xs[0], inplace=in_place)
        if t == "LRN" and p.get("norm_region", "ACROSS_CHANNELS") == "ACROSS_CHANNELS":
            n, alpha, beta, k = (int(p.get("local_size", 5)), float(p.get("alpha", 1.0)),
                                 float(p.get("beta", 0.75)), float(p.get("k", 1.0)))
            return lambda xs: F.local_response_norm(xs[0], n, alpha, beta, k)
        if t == "Dropout":
            ratio, train = float(p.get("dropout_ratio", 0.5)), self.train_mode
            return lambda xs: F.dropout(xs[0], ratio, training=train)
        if t == "BatchNorm":
            eps, mean, var, factor = float(p.get("eps", 1e-5)), *params[:3]
            f = 0.0 if float(factor[0]) == 0 else 1.0 / float(factor[0])
            mean, var = mean * f, var * f
            gamma, beta = (params[3:] + [None, None])[:2]
            stats = p.get("use_global_stats", not self.train_mode)
            return lambda xs: F.batch_norm(xs[0], None if not stats else mean, None if not stats else var,
                                           gamma, beta, training=not stats, eps=eps)
        if t == "Eltwise" and p.get("operation", "SUM") == "SUM" and not p.get("coeff"):
            return lambda xs: functools.reduce(torch.add, xs)
        if t == "Concat":
            axis = int(p.get("axis", p.get("concat_dim", 1)))
            return lambda xs: torch.cat(xs, dim=axis)
        if t == "Softmax":
            axis = int(p.get("axis", 1))
            return lambda xs: torch.softmax(xs[0], dim=axis)
        if t == "SoftmaxWithLoss":
            return lambda xs: F.cross_entropy(xs[0].flatten(1), xs[1])
        return lambda xs: ref.forward_layer(t, p, xs, params)[0]  # the reference's own

    def forward(self, x, label=None):
        blobs = {self.input: x, "label": label}
        for fn, bottoms, top in self.ops:
            blobs[top] = fn([blobs[b] for b in bottoms])
        return blobs[self.output]


# --- the two sides of a case ----------------------------------------------------------------
class Side:
    """One framework's case: ``step()`` runs one pass (queued on a GPU), ``sync()`` waits for
    it, ``result()`` gives what the check compares (host arrays), ``memory`` its figure."""
    step = sync = result = model = None
    memory: int | None = None


def graphed(device, work):
    """``work`` run eagerly the first time (kernels compile), then captured once as a CUDA
    graph and replayed, as trainnet's Solver does; on the CPU ``work`` itself."""
    if not device.is_gpu:
        return work
    state = {"calls": 0, "graph": None}

    def step():
        if state["graph"] is not None:
            state["graph"].replay()
        elif state["calls"] == 0:
            state["calls"] = 1
            work()
        else:
            state["graph"] = device.backend.capture(work)
            state["graph"].replay()
    return step


def checked_weights(cfg: dict) -> dict[str, str]:
    """The weights whose gradients the training check compares: the classifier's, and the first
    layer's (all of backward lies between them)."""
    keys = [f"{l['name']}.0" for l in cfg["layer"] if l["type"] in ("Convolution", "InnerProduct")]
    return {"classifier grad": keys[-1], "first grad": keys[0]}


def trainnet_side(cfg, weights, x, labels, device, train: bool) -> Side:
    plan = compile_net(load_net_text(yaml.safe_dump(cfg, sort_keys=False)), "TRAIN" if train else "TEST",
                       gpu=device.is_gpu)
    net = Net(plan, device, rng=np.random.default_rng(0), graph=not train)
    for key, value in weights.items():
        net.params.assign(key, value)
    assert set(net.params.named()) == set(weights) and net.own_params is None, cfg["name"]
    # The plan reuses the input's memory once nothing reads it: each pass copies the batch in
    # from a device array of its own, as a data layer would (the copy is timed).
    names = ref.as_list(cfg["layer"][0]["top"])[:2 if train else 1]
    feeds = [(net.data(n), device.zeros(a.shape)) for n, a in zip(names, (x, labels))]
    for (_, src), a in zip(feeds, (x, labels)):
        device.upload(src, a.astype(np.float32))

    def feed():
        for dst, src in feeds:
            device.copy(dst, src)
    side = Side()
    side.sync = device.synchronize
    host = device.to_host
    if train:
        side.step = graphed(device, lambda: (feed(), net.forward_device(), net.backward()))
        grads = {k: net.params.named(net.params.diff)[w] for k, w in checked_weights(cfg).items()}
        side.result = lambda: {"output": host(net.data("loss")).reshape(1),
                               **{k: host(g) for k, g in grads.items()}}
        side.memory = plan.arena_bytes + 4 * net.params.diff.size
    else:
        side.step = lambda: (feed(), net.forward())
        side.result = lambda: {"output": host(net.data(plan.outputs[-1]))}
        side.memory = plan.arena_bytes
    return side


def torch_side(cfg, weights, x, labels, device: str, train: bool, compiled: bool = False) -> Side:
    model = TorchNet(cfg, weights, device, train)
    fn = torch.compile(model) if compiled else model
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(labels).to(device)
    side = Side()
    side.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = {}
    if train:
        grads = {k: model.by_key[w] for k, w in checked_weights(cfg).items()}
        def step():
            model.zero_grad(set_to_none=True)
            out["loss"] = fn(xt, yt)
            out["loss"].backward()
        side.result = lambda: {"output": np.array([out["loss"].item()]),
                               **{k: g.grad.cpu().numpy() for k, g in grads.items()}}
    else:
        def step():
            with torch.inference_mode():
                out["y"] = fn(xt)
        side.result = lambda: {"output": out["y"].cpu().numpy()}
    side.step = step
    side.model = model
    return side


def rel_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def check(ours: Side, theirs: Side) -> dict[str, float]:
    """Relative errors between the two sides' results after a pass each (two for a graphed
    side: the second is its first replay)."""
    for side in (ours, theirs):
        side.step()
        side.step()
        side.sync()
    a, b = ours.result(), theirs.result()
    return {k: rel_error(a[k], b[k].reshape(a[k].shape)) for k in a}


def disagreement(errors: dict[str, float]) -> str:
    """Why the two sides do not compute the same, or ''."""
    bad = [f"{k} {e:.1e}" for k, e in errors.items() if not e < TOLERANCE.get(k, TOLERANCE["output"])]
    return "outputs differ (relative error " + ", ".join(bad) + "): not timed" if bad else ""


class OtherLoad:
    """CPU cores kept busy by other processes between ``start`` and ``stop``, from /proc/stat
    less this process's own time (and its children's): timings taken beside a busy neighbour
    are worth little on a small machine, so each row states it."""

    def _now(self):
        with open("/proc/stat") as f:
            user, nice, system, _, _, irq, softirq, steal = map(int, f.readline().split()[1:9])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system

    def start(self):
        self.t0 = self._now()
        return self

    def stop(self) -> float:
        (w0, busy0, own0), (w1, busy1, own1) = self.t0, self._now()
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / max(w1 - w0, 1e-9)


def timed_rounds(sides: dict[str, Side], args) -> dict[str, list[float]]:
    """Seconds per pass of each side in each of ``args.repeats`` alternating rounds."""
    per_round = {}
    for name, side in sides.items():
        t = time.perf_counter()
        for _ in range(max(1, args.warmup)):
            side.step()
        side.sync()
        each = (time.perf_counter() - t) / max(1, args.warmup)
        per_round[name] = max(1, min(1000, math.ceil(args.round_time / max(each, 1e-6))))
    times = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, side in sides.items():
            n = per_round[name]
            t = time.perf_counter()
            for _ in range(n):
                side.step()
            side.sync()
            times[name].append((time.perf_counter() - t) / n)
    return times


# --- PyTorch's memory -------------------------------------------------------------------------
def proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def torch_memory_cuda(side: Side) -> int:
    torch.cuda.synchronize()
    side.model.zero_grad(set_to_none=True)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    side.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def torch_memory_child(specs: str) -> list[int]:
    """The child's job: the peak RSS rise over one pass of the torch net, for each of the
    comma-separated ``NET:BATCH:PASS`` (one net)."""
    import gc
    out = []
    for spec in specs.split(","):
        name, batch, kind = spec.split(":")
        if not out:
            weights, data = reference_weights(name)
        train = kind == "train"
        cfg = variant(zoo_config(name), int(batch), train)
        x, labels = inputs(cfg, int(batch), data)
        side = torch_side(cfg, weights, x, labels, "cpu", train)
        side.step()  # warm-up: oneDNN's primitive caches and the like stay
        side.model.zero_grad(set_to_none=True)
        gc.collect()
        before = proc_status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
        side.step()
        out.append(proc_status("VmHWM") - before)
        del side
        gc.collect()
    return out


def torch_memory_cpu(rows: list[dict], args) -> None:
    """Each timed row's ``mem_torch``, measured by one child process for the rows' net."""
    rows = [r for r in rows if "trainnet" in r]
    if not rows:
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    specs = ",".join(f"{r['net']}:{r['batch']}:{r['pass']}" for r in rows)
    command = [sys.executable, __file__, "--torch-memory", specs, "--threads", str(args.threads)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        print(f"  torch memory {specs} failed: {run.stderr.strip().splitlines()[-1:]}", flush=True)
        return
    for r, value in zip(rows, run.stdout.split()[-len(rows):]):
        r["mem_torch"] = int(value)


# --- the run --------------------------------------------------------------------------------
def trainnet_device(spec: str, tf32: bool):
    if spec == "emulated":
        from emulation.backend import EmulatedBackend
        from trainnet.runtime.device import GpuDevice
        return GpuDevice(EmulatedBackend(), "cuda:emulated")
    from trainnet.runtime.device import get_device
    return get_device(spec, tf32=tf32)


def run_case(name, cfg0, weights, data, batch, train, device, torch_device, args) -> dict:
    cfg = variant(cfg0, batch, train)
    x, labels = inputs(cfg, batch, data)
    row = {"net": name, "pass": "train" if train else "infer", "batch": batch, "note": ""}
    if train and any(l["type"] == "Dropout" for l in cfg["layer"]):  # masks differ: check a
        off = variant(cfg0, batch, train, dropout=0.0)                # copy with dropout off
        row["errors"] = check(trainnet_side(off, weights, x, labels, device, train),
                              torch_side(off, weights, x, labels, torch_device, train))
    t0 = time.perf_counter()
    ours = trainnet_side(cfg, weights, x, labels, device, train)
    row["compile_s"] = time.perf_counter() - t0
    theirs = torch_side(cfg, weights, x, labels, torch_device, train)
    if "errors" not in row:
        row["errors"] = check(ours, theirs)
    row["note"] = disagreement(row["errors"])
    if row["note"]:
        return row
    sides = {"trainnet": ours, "torch": theirs}
    if args.compile:
        try:
            t0 = time.perf_counter()
            comp = torch_side(cfg, weights, x, labels, torch_device, train, compiled=True)
            comp.step()
            comp.sync()
            row["torch.compile_s"] = time.perf_counter() - t0
            differs = disagreement(check(ours, comp))
            if differs:
                row["note"] = f"torch.compile {differs}"
            else:
                sides["torch.compile"] = comp
        except Exception as exc:  # report, don't hide: the row says why
            row["note"] = f"torch.compile failed: {type(exc).__name__}: {str(exc)[:80]}"
    load = OtherLoad().start()
    for k, rounds in timed_rounds(sides, args).items():
        row[k], row[k + "_range"] = statistics.median(rounds), (min(rounds), max(rounds))
    row["other_load"] = load.stop()
    row["mem_trainnet"] = ours.memory
    if not args.no_memory and torch_device == "cuda":
        row["mem_torch"] = torch_memory_cuda(theirs)
    return row


def describe_machine(device, torch_device) -> str:
    if torch_device == "cuda":
        return f"{torch.cuda.get_device_name()} ({device})"
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    return f"CPU {model}, {os.cpu_count()} cores" + ("" if not device.is_gpu else f"; trainnet on {device}")


def errors(row) -> str:
    e = row["errors"]
    return f"{e['output']:.1e}" + (f" ({e['first grad']:.1e})" if "first grad" in e else "")


def print_table(rows, args, device, torch_device):
    import datetime
    print(f"\n{datetime.date.today()}  {describe_machine(device, torch_device)}  threads {args.threads}  "
          f"numpy {np.__version__}  torch {torch.__version__}  python {sys.version.split()[0]}  "
          f"tf32 {'on' if args.tf32 else 'off'}  median of {args.repeats} rounds")
    comp = args.compile
    head = ["net", "pass", "batch", "trainnet ms", "torch ms", "trainnet img/s", "torch img/s",
            "time trainnet/torch"] + (["compile ms", "trainnet/compile"] if comp else []) + \
           ["trainnet arena MiB", "torch peak MiB", "rel. error output (first grad)"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    mib = lambda b: "n/a" if b is None else f"{b / 2**20:.1f}"  # noqa: E731
    for r in rows:
        if "trainnet" not in r:
            print(f"| {r['net']} | {r['pass']} | {r['batch']} | {r['note']} |")
            continue
        cells = [r["net"], r["pass"], str(r["batch"]), f"{r['trainnet'] * 1e3:.2f}",
                 f"{r['torch'] * 1e3:.2f}", f"{r['batch'] / r['trainnet']:,.1f}",
                 f"{r['batch'] / r['torch']:,.1f}",
                 f"**{r['trainnet'] / r['torch']:.2f}**"]
        if comp:
            c = r.get("torch.compile")
            cells += [f"{c * 1e3:.2f}" if c else "n/a", f"{r['trainnet'] / c:.2f}" if c else "n/a"]
        cells += [mib(r["mem_trainnet"]), mib(r.get("mem_torch")), errors(r)]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        extra = [f"trainnet compile {r['compile_s']:.1f} s"]
        for k in ("trainnet", "torch", "torch.compile"):
            if k + "_range" in r:
                extra.append(f"{k} rounds {r[k + '_range'][0] * 1e3:.4g}-{r[k + '_range'][1] * 1e3:.4g} ms")
        if "other_load" in r:
            extra.append(f"other processes {r['other_load']:.2f} cores while timed")
        if "torch.compile_s" in r:
            extra.append(f"torch.compile first call {r['torch.compile_s']:.1f} s")
        note = f"; {r['note']}" if r["note"] else ""
        print(f"  {r['net']} {r['pass']} b{r['batch']}: " + ", ".join(extra) + note)


def main(args):
    torch.set_num_threads(args.threads)
    if args.torch_memory:
        print(*torch_memory_child(args.torch_memory))
        return
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest algorithms
    try:
        device = trainnet_device(args.device, args.tf32)
    except TrainnetError as exc:
        sys.exit(f"benchmarks/zoo_nets.py --device {args.device}: {exc}")
    torch_device = "cuda" if args.device == "cuda" else "cpu"
    nets = [n for n in args.nets.split(",") if n]
    train_nets = [n for n in args.train_nets.split(",") if n]
    rows = []
    for name in dict.fromkeys(nets + train_nets):
        cfg = zoo_config(name)
        weights, data = reference_weights(name)
        batches = ([] if args.no_batch1 else [1]) + [large_batch(name, args)]
        cases = ([(b, False) for b in batches] if name in nets else []) + \
                ([(large_batch(name, args), True)] if name in train_nets else [])
        for batch, train in cases:
            t = time.perf_counter()
            rows.append(run_case(name, cfg, weights, data, batch, train, device, torch_device, args))
            r = rows[-1]
            speed = (f"trainnet {r['trainnet'] * 1e3:.2f} ms, torch {r['torch'] * 1e3:.2f} ms"
                     if "trainnet" in r else r["note"])
            print(f"{name} {r['pass']} b{batch}: {speed}, error {errors(r)} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        if not args.no_memory and torch_device == "cpu":
            torch_memory_cpu(rows[-len(cases):], args)
    print_table(rows, args, device, torch_device)


if __name__ == "__main__":
    main(ARGS)
