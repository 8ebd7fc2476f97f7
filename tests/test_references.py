"""Zoo nets at random weights against layer-by-layer outputs of an independent implementation.

tests/reference/make_references.py builds each net in PyTorch (float64, Caffe's semantics, no
trainnet) and stores every blob's value after the last layer that writes it: whole, or at a
fixed sample of positions.  Here trainnet compiles the same zoo net for TEST with every blob
kept (``reuse_memory=False``), gets the same weights and input, runs a forward and compares
every stored blob: ``||got - want|| / ||want|| <= 1e-4``.  See tests/reference/README.md.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from trainnet.netcfg import load_net
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net

importlib.import_module("trainnet.zoo")  # registers zoo:NAME, which the tests load

REFERENCE = Path(__file__).parent / "reference"
TOLERANCE = 1e-4
FILES = sorted(REFERENCE.glob("*.safetensors"))


def draw(seed: int, i: int, kind: str, shape: tuple[int, ...], input_std: float, gain: float):
    """Blob ``i`` of a net (0 is the input), float32: make_references.py's recipe, repeated.
    None for BatchNorm's blobs, which the reference file stores."""
    rng = np.random.default_rng([seed, i])
    fan_in = math.prod(shape[1:])
    value = {
        "input": lambda: rng.standard_normal(shape) * input_std,
        "weight": lambda: rng.standard_normal(shape) * math.sqrt(2.0 / fan_in),  # He normal
        "classifier": lambda: rng.standard_normal(shape) * math.sqrt(2.0 / fan_in) * gain,
        "bias": lambda: rng.normal(0.0, 0.1, shape),
        "gamma": lambda: rng.uniform(0.5, 1.5, shape),
        "beta": lambda: rng.normal(0.0, 0.1, shape),
    }
    return np.asarray(value[kind](), dtype=np.float32) if kind in value else None


def read_reference(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(str(path), framework="numpy") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def run_trainnet(meta: dict[str, str], tensors: dict[str, np.ndarray], device=CPU) -> Net:
    """The zoo net with the reference's weights and input, after one forward on ``device``."""
    plan = compile_net(load_net(f"zoo:{meta['net']}"), "TEST", backward=False, reuse_memory=False,
                       gpu=device.is_gpu)
    net = Net(plan, device, rng=np.random.default_rng(0))
    seed, std, gain = int(meta["seed"]), float(meta["input_std"]), float(meta["classifier_gain"])
    listing = json.loads(meta["params"])
    for i, (kind, key, shape) in enumerate(listing):
        stored = tensors.get("input" if kind == "input" else f"param/{key}")
        drawn = draw(seed, i, kind, tuple(shape), std, gain)
        if stored is not None and drawn is not None:
            assert np.array_equal(stored, drawn), (
                f"{meta['net']}: {key} drawn here differs from the stored one: the recipe in this "
                "file and make_references.py disagree, or numpy's random stream changed")
        value = stored if stored is not None else drawn
        assert value is not None and value.shape == tuple(shape), (meta["net"], key)
        if kind == "input":
            net.set_input(key, value)
        else:
            net.params.assign(key, value)
    given = {key for kind, key, _ in listing if kind != "input"}
    assert set(net.params.named()) == given, f"{meta['net']}: the nets' parameter blobs differ"
    assert net.own_params is None
    net.forward()
    return net


def compare(meta, tensors, net: Net) -> dict[str, float]:
    """Relative error of every stored blob; fails naming the net, the blobs and their errors."""
    errors, bad = {}, []
    for blob in json.loads(meta["blobs"]):
        got = np.asarray(net.device.to_host(net.data(blob)), dtype=np.float64)
        if f"full/{blob}" in tensors:
            want = tensors[f"full/{blob}"].astype(np.float64)
            if got.shape != want.shape:
                bad.append(f"{blob}: shape {got.shape}, want {want.shape}")
                continue
        else:
            want = tensors[f"value/{blob}"].astype(np.float64)
            got = got.reshape(-1)[tensors[f"index/{blob}"]]
        err = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
        errors[blob] = err
        if not err <= TOLERANCE:
            bad.append(f"{blob}: relative error {err:.2e}")
    assert not bad, f"{meta['net']} on {net.device} differs from {REFERENCE.name}/{meta['net']}" \
                    f".safetensors (tolerance {TOLERANCE:g}):\n  " + "\n  ".join(bad)
    return errors


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_zoo_net_matches_the_reference(path):
    meta, tensors = read_reference(path)
    compare(meta, tensors, run_trainnet(meta, tensors))


@pytest.mark.gpu
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_zoo_net_on_the_gpu_matches_the_reference(path, gpu_device):
    meta, tensors = read_reference(path)
    compare(meta, tensors, run_trainnet(meta, tensors, gpu_device))


def test_reference_files_cover_every_blob():
    """Each file stores every blob of its net and its outputs whole; the core nets are there."""
    assert {p.stem for p in FILES} >= {"lenet", "cifar10_full", "caffenet", "googlenet"}
    for path in FILES:
        meta, tensors = read_reference(path)
        blobs = json.loads(meta["blobs"])
        for blob in blobs:
            assert f"full/{blob}" in tensors or f"index/{blob}" in tensors, (path.stem, blob)
        for output in json.loads(meta["outputs"]):
            assert f"full/{output}" in tensors, (path.stem, output)
