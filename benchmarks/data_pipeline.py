"""Images per second delivered by trainnet's data layers and by PyTorch's DataLoader, in one run.

    python benchmarks/data_pipeline.py [--threads 2] [--workers 1,2] [--batch 64] [--batches 30]
                                       [--rounds 5] [--images 512] [--synthetic]

The data: ``--images`` 256x256 JPEG files (quality 90) made in a temporary folder from Caffe's
two example photos (random scale, crop, flip and brightness, so each file decodes differently),
or with ``--synthetic`` from smooth noise, gradients and texture; a list file for ImageData, and
an LMDB of encoded Datums (``convert_imageset --encoded``'s records) for Data.

The work per image, on both sides: Pillow decodes to RGB, the channels become BGR (Caffe's
order), a random 227x227 crop and a random mirror are taken, a per-channel mean is subtracted,
and the result is float32 CHW. trainnet: an ImageData layer (and a Data layer over the LMDB) in
TRAIN phase, built from a net config and run by ``Net.forward`` as training does (the batch lands
in the net's arena). PyTorch: a ``DataLoader`` (persistent worker processes, pin_memory off,
default collate) over a ``Dataset`` doing the same work in NumPy, ``torch.from_numpy`` at the
end, over the files and over the LMDB. Both read the images in list order, cycling.

Before timing, the two sides are checked to compute the same: trainnet's TEST-phase batch
(centre crop, no mirror) against the PyTorch-side item function at the centre, and trainnet's
transform of a mirrored random crop against the same choices on the PyTorch side.

Timing: each side keeps one reader (one DataLoader iterator) for the whole run; each round
first takes as many batches as its queue holds plus two, untimed (so what was read ahead while
the other side ran is spent), then times ``--batches`` batches: the steady-state rate of a
consumer that does nothing else. Rounds alternate the sides; medians are reported, with the CPU
cores other processes used while each side was timed. Then what explains the rates: the
per-image cost of each stage on one thread (both sides' stages in turn, medians), trainnet's
per-item work in k threads against k forked processes (what the GIL costs), and each pipeline's
own cost with ready-made items.  Figures: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAFFE_IMAGES = [Path(os.environ.get("TRAINNET_DATA", "/work/shared/data")) / "caffe/images" / n
                for n in ("cat.jpg", "fish-bike.jpg")]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="NumPy/BLAS/torch threads (both sides)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30, help="timed batches per side and round")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    ap.add_argument("--images", type=int, default=512, help="JPEG files made")
    ap.add_argument("--side", type=int, default=256, help="image side")
    ap.add_argument("--crop", type=int, default=227)
    ap.add_argument("--synthetic", action="store_true", help="noise/gradient images, not photos")
    ap.add_argument("--no-lmdb", action="store_true", help="skip the Data layer over LMDB")
    ap.add_argument("--no-stages", action="store_true", help="skip the per-image stage costs")
    ap.add_argument("--only", default="", help="comma-separated sides to time (default: all)")
    ap.add_argument("--dir", default="", help="folder for the images (default: a temporary one)")
    return ap.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402
import PIL  # noqa: E402
from torch.utils.data import DataLoader, Dataset, Sampler  # noqa: E402

from trainnet.data.datum import decode_image, encode_datum, parse_datum  # noqa: E402
from trainnet.data.db import create_database, open_database  # noqa: E402
from trainnet.data.transform import Transformer  # noqa: E402
from trainnet.netcfg import load_net_text  # noqa: E402
from trainnet.netcfg.common import TransformationParameter  # noqa: E402
from trainnet.plan import compile_net  # noqa: E402
from trainnet.runtime.net import Net  # noqa: E402

MEAN_BGR = (104.0, 117.0, 123.0)  # Caffe's ImageNet per-channel mean


# --- the images --------------------------------------------------------------------------------
def photo_variant(photos: list[Image.Image], rng: np.random.Generator, side: int) -> Image.Image:
    """A side x side view of one photo: scaled 1-1.6x past the short side, cropped at random,
    maybe mirrored, brightness and colour jittered."""
    src = photos[int(rng.integers(len(photos)))]
    scale = side / min(src.size) * rng.uniform(1.0, 1.6)
    w, h = max(side, round(src.width * scale)), max(side, round(src.height * scale))
    img = src.resize((w, h), Image.BICUBIC)
    x, y = int(rng.integers(w - side + 1)), int(rng.integers(h - side + 1))
    img = img.crop((x, y, x + side, y + side))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))


def synthetic(rng: np.random.Generator, side: int) -> Image.Image:
    """Smooth noise (upsampled coarse noise) over colour gradients, plus fine texture."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    base = np.stack([a * xx + b * yy + c for a, b, c in rng.uniform(-120, 120, (3, 3))], -1) + 128
    coarse = rng.normal(0, 40, (8, 8, 3)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse[..., 0]).resize((side, side), Image.BICUBIC))
    base += smooth[..., None] + rng.normal(0, 12, (side, side, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def make_dataset(folder: Path, n: int, side: int, use_synthetic: bool):
    """n JPEG files, the ImageData list file naming them, and an LMDB of their encoded Datums."""
    rng = np.random.default_rng(0)
    photos = [] if use_synthetic else [Image.open(p).convert("RGB") for p in CAFFE_IMAGES if p.is_file()]
    folder.mkdir(parents=True, exist_ok=True)
    names, payloads = [], []
    for i in range(n):
        img = photo_variant(photos, rng, side) if photos else synthetic(rng, side)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        name = f"img_{i:05d}.jpg"
        (folder / name).write_bytes(buf.getvalue())
        names.append(name)
        payloads.append(buf.getvalue())
    labels = [i % 1000 for i in range(n)]
    (folder / "list.txt").write_text("".join(f"{m} {l}\n" for m, l in zip(names, labels)))
    if not ARGS.no_lmdb:
        # Two identical databases: LMDB refuses a second handle on one file in a process, and
        # the DataLoader's forked workers inherit trainnet's.
        for name in ("lmdb", "lmdb-torch"):
            with create_database(folder / name, "LMDB") as db:
                for i, (m, l, data) in enumerate(zip(names, labels, payloads)):
                    db.put(f"{i:08d}_{m}".encode(), encode_datum(None, l, encoded=data))
    kind = "synthetic" if not photos else "from Caffe's example photos"
    size = sum(len(p) for p in payloads) / n / 1024
    return names, labels, f"{n} JPEGs {side}x{side} q90 {kind}, {size:.0f} KiB each on average"


# --- trainnet ----------------------------------------------------------------------------------
def trainnet_net(folder: Path, layer: str, workers: int, phase="TRAIN", mirror=True) -> Net:
    """A net of one data layer (ImageData over the list file, or Data over the LMDB)."""
    mean = ", ".join(str(v) for v in MEAN_BGR)
    source = (f"type: ImageData\n    source: {folder / 'list.txt'}\n    root_folder: {folder}/"
              if layer == "ImageData" else f"type: Data\n    source: {folder / 'lmdb'}\n    backend: LMDB")
    text = f"""name: pipeline
layer:
  - name: data
    {source}
    top: [data, label]
    batch_size: {ARGS.batch}
    workers: {workers}
    transform_param: {{crop_size: {ARGS.crop}, mirror: {str(mirror).lower()}, mean_value: [{mean}]}}
"""
    return Net(compile_net(load_net_text(text), phase), rng=np.random.default_rng(0))


class TrainnetSide:
    def __init__(self, folder, layer, workers):
        self.net = trainnet_net(folder, layer, workers)
        reader = next(iter(self.net.states.values()))
        self.depth = reader.prefetch
        self.data = self.net.data("data")

    def next(self):
        self.net.forward()

    def close(self):
        for reader in self.net.states.values():
            reader.close()


# --- PyTorch -----------------------------------------------------------------------------------
def torch_decode(source) -> np.ndarray:
    """Pillow's decode to RGB as HWC uint8 (a path or a file's bytes)."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        return np.asarray(img.convert("RGB"))


MEAN_CHW = np.asarray(MEAN_BGR, np.float32).reshape(3, 1, 1)


def torch_transform(rgb: np.ndarray, oy: int, ox: int, flip: bool, crop: int) -> np.ndarray:
    """BGR, the crop at (oy, ox), mirrored or not, minus the mean: float32 CHW."""
    window = rgb[oy:oy + crop, ox:ox + crop, ::-1]
    if flip:
        window = window[:, ::-1]
    out = np.empty((3, crop, crop), np.float32)
    np.subtract(window.transpose(2, 0, 1), MEAN_CHW, out=out)
    return out


class JpegDataset(Dataset):
    """The files (``paths``) or the LMDB (``lmdb_path``): decoded, cropped, mirrored at random."""

    def __init__(self, labels, crop, paths=None, lmdb_path=None, keys=None):
        self.labels, self.crop, self.paths = labels, crop, paths
        self.lmdb_path, self.keys = lmdb_path, keys
        self.rng = np.random.default_rng(0)
        self.txn = None

    def __len__(self):
        return len(self.labels)

    def source(self, i):
        if self.paths is not None:
            return self.paths[i], self.labels[i]
        if self.txn is None:  # opened in the worker process, on first use
            import lmdb
            self.txn = lmdb.open(self.lmdb_path, readonly=True, lock=False, readahead=False).begin()
        datum = parse_datum(self.txn.get(self.keys[i]))
        return datum.data, datum.label

    def __getitem__(self, i):
        src, label = self.source(i)
        rgb = torch_decode(src)
        h, w = rgb.shape[:2]
        oy, ox = (int(v) for v in self.rng.integers(0, (h - self.crop + 1, w - self.crop + 1)))
        flip = bool(self.rng.integers(2))
        return torch.from_numpy(torch_transform(rgb, oy, ox, flip, self.crop)), label


def seed_worker(worker_id):
    info = torch.utils.data.get_worker_info()
    info.dataset.rng = np.random.default_rng(1000 + worker_id)


class Cycle(Sampler):
    """0, 1, ..., n-1, 0, 1, ... without end (one iterator serves every round)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        i = 0
        while True:
            yield i
            i = (i + 1) % self.n


class TorchSide:
    def __init__(self, dataset, workers):
        self.loader = DataLoader(dataset, batch_size=ARGS.batch, sampler=Cycle(len(dataset)),
                                 num_workers=workers, pin_memory=False, persistent_workers=workers > 0,
                                 worker_init_fn=seed_worker if workers else None)
        self.depth = self.loader.prefetch_factor * workers if workers else 0
        self.it = iter(self.loader)

    def next(self):
        self.batch = next(self.it)

    def close(self):
        del self.it


# --- checks ------------------------------------------------------------------------------------
def check_equal(folder: Path, names, lmdb_keys) -> list[str]:
    """trainnet's outputs against the PyTorch-side functions for the same choices."""
    lines = []
    crop, side = ARGS.crop, ARGS.side
    for layer in ("ImageData",) + (() if lmdb_keys is None else ("Data",)):
        net = trainnet_net(folder, layer, 1, phase="TEST", mirror=False)
        net.forward()
        got = net.data("data")
        c = (side - crop) // 2
        want = np.stack([torch_transform(torch_decode(str(folder / names[k])), c, c, False, crop)
                         for k in range(ARGS.batch)])
        for reader in net.states.values():
            reader.close()
        diff = float(np.abs(got - want).max())
        lines.append(f"{layer} TEST batch (centre crop, no mirror) vs PyTorch side: max |diff| {diff}")
        if diff != 0:
            raise SystemExit("the two sides do not compute the same: " + lines[-1])
    tp = TransformationParameter(crop_size=crop, mirror=True, mean_value=list(MEAN_BGR))
    transformer = Transformer(tp, True, (3, side, side))
    rng = np.random.default_rng(5)
    draws = transformer.draw(rng, 8)
    worst = 0.0
    for k in range(8):
        path = str(folder / names[k])
        out = np.empty((3, crop, crop), np.float32)
        transformer.apply(decode_image(path, color=True), draws, k, out)
        oy, ox = transformer.offsets(draws, k, side, side)
        worst = max(worst, float(np.abs(out - torch_transform(torch_decode(path), oy, ox,
                                                              bool(draws.mirror[k]), crop)).max()))
    lines.append(f"TRAIN transform, 8 random crops ({int(draws.mirror.sum())} mirrored), same draws: "
                 f"max |diff| {worst}")
    if worst != 0:
        raise SystemExit("the two sides do not compute the same: " + lines[-1])
    return lines


# --- timing ------------------------------------------------------------------------------------
class OtherLoad:
    """CPU cores kept busy by other processes meanwhile: /proc/stat less this process's time
    and its children's (the DataLoader's workers, read from /proc while they live)."""

    @staticmethod
    def _own() -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        me = str(os.getpid())
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if pid == me or fields[1] == me:  # fields[1]: the parent's pid
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def _now(self):
        with open("/proc/stat") as f:
            user, nice, system, _, _, irq, softirq, steal = map(int, f.readline().split()[1:9])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        return time.perf_counter(), busy, self._own()

    def start(self):
        self.t0 = self._now()
        return self

    def stop(self) -> tuple[float, float]:
        """(other processes' cores, this process tree's cores) since start."""
        (w0, busy0, own0), (w1, busy1, own1) = self.t0, self._now()
        wall = max(w1 - w0, 1e-9)
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, (own1 - own0) / wall


def time_round(side) -> tuple[float, float, float]:
    """(images/s over ARGS.batches batches, other processes' cores, own cores)."""
    for _ in range(side.depth + 2):
        side.next()
    load = OtherLoad().start()
    t = time.perf_counter()
    for _ in range(ARGS.batches):
        side.next()
    seconds = time.perf_counter() - t
    other, own = load.stop()
    return ARGS.batches * ARGS.batch / seconds, other, own


# --- per-image stage costs ---------------------------------------------------------------------
def stage_costs(folder: Path, names, lmdb_keys, rounds: int = 5) -> list[tuple[str, float, float]]:
    """(stage, trainnet us/image, PyTorch-side us/image) on one thread: every stage of both sides
    timed once per round, in turn, over 64 items; medians of the rounds.  Each side writes where
    it does in its pipeline: trainnet's transform into a batch buffer (one of four, in turn, as
    the prefetch buffers), the PyTorch side into a new array per item that collate then stacks."""
    crop, side, batch = ARGS.crop, ARGS.side, ARGS.batch
    paths = [str(folder / n) for n in names[:batch]]
    tp = TransformationParameter(crop_size=crop, mirror=True, mean_value=list(MEAN_BGR))
    transformer = Transformer(tp, True, (3, side, side))
    draws = transformer.draw(np.random.default_rng(1), batch)
    offsets = [transformer.offsets(draws, k, side, side) for k in range(batch)]
    decoded_t = [decode_image(p, color=True) for p in paths]
    decoded_p = [torch_decode(p) for p in paths]
    buffers = np.ones((4, batch, 3, crop, crop), np.float32)
    one = np.ones((3, crop, crop), np.float32)
    dst = np.ones((batch, 3, crop, crop), np.float32)
    items = [torch.from_numpy(torch_transform(decoded_p[k], *offsets[k], bool(draws.mirror[k]), crop))
             for k in range(batch)]
    turn = iter(range(10**9))

    def transform_t():
        out = buffers[next(turn) % 4]
        for k in range(batch):
            transformer.apply(decoded_t[k], draws, k, out[k])

    def transform_p():
        for k in range(batch):
            torch_transform(decoded_p[k], *offsets[k], bool(draws.mirror[k]), crop)

    def same_place(apply):
        def run():
            for k in range(batch):
                apply(k)
        return run

    def each(fn, items):  # as in a pipeline: each result dropped before the next is made
        def run():
            for x in items:
                fn(x)
        return run

    stages = {
        "decode file (Pillow to RGB, as an array)": (
            each(lambda p: decode_image(p, color=True), paths), each(torch_decode, paths)),
    }
    if lmdb_keys is not None:
        db = open_database(folder / "lmdb", "LMDB")
        keys = lmdb_keys[:batch]
        payloads = [parse_datum(db.get(k)).data for k in keys]
        stages["LMDB get + Datum parse"] = (each(lambda k: parse_datum(db.get(k)), keys),) * 2
        stages["decode Datum bytes"] = (each(decode_image, payloads), each(torch_decode, payloads))
    stages["transform (crop, mirror, mean, float32 CHW) where each side writes it"] = (
        transform_t, transform_p)
    stages["transform into one reused array (the same NumPy work)"] = (
        same_place(lambda k: transformer.apply(decoded_t[k], draws, k, one)),
        same_place(lambda k: np.subtract(
            decoded_p[k][offsets[k][0]:offsets[k][0] + crop, offsets[k][1]:offsets[k][1] + crop, ::-1]
            [:, ::-1 if draws.mirror[k] else 1].transpose(2, 0, 1), MEAN_CHW, out=one)))
    stages["deliver: trainnet's copy to the net; collate into shared memory (worker)"] = (
        lambda: np.copyto(dst, buffers[0]), lambda: collate_shared(items))
    times = {(name, i): [] for name in stages for i in (0, 1)}
    for fns in stages.values():  # warm up
        for fn in fns:
            fn()
    for _ in range(rounds):
        for name, fns in stages.items():
            for i, fn in enumerate(fns):
                t = time.perf_counter()
                fn()
                times[name, i].append((time.perf_counter() - t) / batch * 1e6)
    return [(name, statistics.median(times[name, 0]), statistics.median(times[name, 1]))
            for name in stages]


def collate_shared(items):
    """default_collate as a DataLoader worker runs it: the batch stacked into new shared memory."""
    elem = items[0]
    storage = elem._typed_storage()._new_shared(len(items) * elem.numel(), device=elem.device)
    out = elem.new(storage).resize_(len(items), *elem.shape)
    return torch.stack(items, 0, out=out)


def machinery(crop) -> tuple[float, float]:
    """Images/s of each pipeline alone, 1 worker, items ready: trainnet copies each into the
    batch (an identity transform), the DataLoader collates and passes the batch to the parent."""
    from trainnet.data.pipeline import BatchReader, RecordFeeder
    from trainnet.data.sampler import Sampler

    shape = (3, crop, crop)
    ready = np.random.default_rng(0).random(shape, dtype=np.float32)
    identity = Transformer(TransformationParameter(), True, shape)
    feeder = RecordFeeder("ready", 256, lambda i: (ready, 0), str, identity)
    reader = BatchReader(feeder, Sampler(256, np.random.default_rng(0)),
                         [(ARGS.batch,) + shape, (ARGS.batch,)], workers=1)
    outs = [np.empty((ARGS.batch,) + shape, np.float32), np.empty(ARGS.batch, np.float32)]
    t_side = type("T", (), {"depth": reader.prefetch, "next": lambda self: reader.next_batch(*outs)})()
    p_side = TorchSide(ReadyDataset(torch.from_numpy(ready)), 1)
    rates = {}
    for name, side in (("t", t_side), ("p", p_side), ("t2", t_side), ("p2", p_side)):
        rates[name] = time_round(side)[0]
    reader.close()
    p_side.close()
    return max(rates["t"], rates["t2"]), max(rates["p"], rates["p2"])


class ReadyDataset(Dataset):
    def __init__(self, item):
        self.item = item

    def __len__(self):
        return 256

    def __getitem__(self, i):
        return self.item, 0


def whole_item(folder, names, labels, lmdb_keys) -> list[tuple[str, float, float]]:
    """Whole batches on the calling thread (trainnet workers 0, DataLoader num_workers 0, which
    collates into ordinary memory), alternating, median of 5 rounds of 2 batches."""
    rows = []
    paths = [str(folder / n) for n in names]
    sets = [("ImageData", JpegDataset(labels, ARGS.crop, paths=paths))]
    if lmdb_keys is not None:
        sets.append(("Data", JpegDataset(labels, ARGS.crop, lmdb_path=str(folder / "lmdb-torch"),
                                         keys=lmdb_keys)))
    for layer, dataset in sets:
        sides = {"t": TrainnetSide(folder, layer, 0), "p": TorchSide(dataset, 0)}
        times = {"t": [], "p": []}
        for side in sides.values():
            side.next()
        for _ in range(5):
            for name, side in sides.items():
                t = time.perf_counter()
                for _ in range(2):
                    side.next()
                times[name].append((time.perf_counter() - t) / (2 * ARGS.batch) * 1e6)
        for side in sides.values():
            side.close()
        source = "files" if layer == "ImageData" else "LMDB"
        rows.append((f"whole item on the calling thread, batch included ({layer} / {source}; "
                     "workers 0)", statistics.median(times["t"]), statistics.median(times["p"])))
    return rows


def _fill_loop(paths, transformer, draws, out, n):
    for j in range(n):
        k = j % len(paths)
        transformer.apply(decode_image(paths[k], color=True), draws, k, out[k])


def _fill_worker(paths, transformer, draws, n, barrier, results):
    out = np.ones((len(paths), 3, ARGS.crop, ARGS.crop), np.float32)
    _fill_loop(paths, transformer, draws, out, len(paths))  # warm: buffers touched, decoder loaded
    barrier.wait()
    t = time.perf_counter()
    _fill_loop(paths, transformer, draws, out, n)
    results.put(time.perf_counter() - t)


def threads_vs_processes(folder: Path, names, counts, rounds: int = 5, n: int = 768) -> dict:
    """Images/s of trainnet's per-item work (decode a file, transform into a batch buffer) done by
    k threads or k forked processes at once, warm, for each k: what the GIL costs the threads,
    so what worker processes could gain at best.  Median of ``rounds``."""
    import multiprocessing
    import queue
    import threading

    paths = [str(folder / m) for m in names[:ARGS.batch]]
    tp = TransformationParameter(crop_size=ARGS.crop, mirror=True, mean_value=list(MEAN_BGR))
    transformer = Transformer(tp, True, (3, ARGS.side, ARGS.side))
    draws = transformer.draw(np.random.default_rng(1), len(paths))
    fork = multiprocessing.get_context("fork")
    rates: dict = {}
    for _ in range(rounds):
        for kind in ("threads", "processes"):
            for k in counts:
                if kind == "threads":
                    barrier, results = threading.Barrier(k + 1), queue.Queue()
                    make = threading.Thread
                else:
                    barrier, results = fork.Barrier(k + 1), fork.Queue()
                    make = fork.Process
                workers = [make(target=_fill_worker, args=(paths, transformer, draws, n, barrier, results))
                           for _ in range(k)]
                for w in workers:
                    w.start()
                barrier.wait()
                t = time.perf_counter()
                for _ in workers:
                    results.get()
                rates.setdefault((kind, k), []).append(k * n / (time.perf_counter() - t))
                for w in workers:
                    w.join()
    return {key: statistics.median(v) for key, v in rates.items()}


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} cores"


def main():
    torch.set_num_threads(ARGS.threads)
    workers = [int(w) for w in ARGS.workers.split(",") if w]
    tmp = tempfile.TemporaryDirectory(prefix="trainnet-pipeline-") if not ARGS.dir else None
    folder = Path(ARGS.dir or tmp.name)
    t = time.perf_counter()
    names, labels, what = make_dataset(folder, ARGS.images, ARGS.side, ARGS.synthetic)
    lmdb_keys = None
    if not ARGS.no_lmdb:
        lmdb_keys = open_database(folder / "lmdb", "LMDB").keys
    print(f"{what}; made in {time.perf_counter() - t:.1f} s")
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pillow {PIL.__version__}, "
          f"torch {torch.__version__}; threads {ARGS.threads}; batch {ARGS.batch}, crop {ARGS.crop}, "
          f"mirror, mean {MEAN_BGR}; {ARGS.rounds} rounds x {ARGS.batches} batches")
    for line in check_equal(folder, names, lmdb_keys):
        print("check: " + line)

    # Before any torch work: torch's thread pool must not be running beside these.
    gil = threads_vs_processes(folder, names, workers) if not ARGS.no_stages else None

    paths = [str(folder / n) for n in names]
    sides = {}
    for w in workers:
        sides[f"trainnet ImageData w{w}"] = lambda w=w: TrainnetSide(folder, "ImageData", w)
        sides[f"torch files w{w}"] = lambda w=w: TorchSide(JpegDataset(labels, ARGS.crop, paths=paths), w)
        if lmdb_keys is not None:
            sides[f"trainnet Data/LMDB w{w}"] = lambda w=w: TrainnetSide(folder, "Data", w)
            sides[f"torch LMDB w{w}"] = lambda w=w: TorchSide(
                JpegDataset(labels, ARGS.crop, lmdb_path=str(folder / "lmdb-torch"), keys=lmdb_keys), w)
    only = [s for s in ARGS.only.split(",") if s]
    if only:
        sides = {k: v for k, v in sides.items() if any(o in k for o in only)}
    built = {name: make() for name, make in sides.items()}
    results = {name: [] for name in built}
    for r in range(ARGS.rounds):
        for name, side in built.items():
            results[name].append(time_round(side))
        print(f"round {r + 1}: " + ", ".join(f"{n} {results[n][-1][0]:.0f}" for n in built), flush=True)
    for side in built.values():
        side.close()

    med = {n: statistics.median(x[0] for x in v) for n, v in results.items()}
    print(f"\nimages/s, median of {ARGS.rounds} rounds (others: cores other processes used while "
          f"timed, median; own: cores this process and its workers used)")
    print("| source | workers | trainnet img/s | torch DataLoader img/s | trainnet/torch | "
          "others (t / p) | own cores (t / p) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for w in workers:
        for src, t_name, p_name in (
                ("JPEG files (ImageData)", f"trainnet ImageData w{w}", f"torch files w{w}"),
                ("LMDB, encoded (Data)", f"trainnet Data/LMDB w{w}", f"torch LMDB w{w}")):
            if t_name not in med or p_name not in med:
                continue
            o = {n: statistics.median(x[1] for x in results[n]) for n in (t_name, p_name)}
            c = {n: statistics.median(x[2] for x in results[n]) for n in (t_name, p_name)}
            print(f"| {src} | {w} | {med[t_name]:.0f} | {med[p_name]:.0f} | "
                  f"**{med[t_name] / med[p_name]:.2f}** | {o[t_name]:.2f} / {o[p_name]:.2f} | "
                  f"{c[t_name]:.2f} / {c[p_name]:.2f} |")
    if not ARGS.no_stages:
        torch.set_num_threads(1)
        rows = stage_costs(folder, names, lmdb_keys) + whole_item(folder, names, labels, lmdb_keys)
        torch.set_num_threads(ARGS.threads)
        print("\nper image, one thread (us; median of 5 rounds, the stages in turn)")
        print("| stage | trainnet | PyTorch side |")
        print("| --- | --- | --- |")
        for stage, a, b in rows:
            print(f"| {stage} | {a:.0f} | {b:.0f} |")
        print("\ntrainnet's per-item work (decode + transform into a batch buffer) in k threads or k "
              "forked processes at once, img/s: " + "; ".join(
                  f"k={k}: threads {gil['threads', k]:.0f}, processes {gil['processes', k]:.0f}"
                  for k in workers))
        t_rate, p_rate = machinery(ARGS.crop)
        print(f"\npipeline alone (items ready-made, 1 worker): trainnet {t_rate:.0f} img/s "
              f"({1e6 / t_rate:.0f} us/image), DataLoader {p_rate:.0f} img/s ({1e6 / p_rate:.0f} us/image)")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
