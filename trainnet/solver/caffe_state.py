"""Snapshots in Caffe's formats, and resuming from them (snapshot_format BINARYPROTO or HDF5).

As Caffe's Solver::Snapshot, a snapshot is the train net's weights (``<prefix>_iter_N.caffemodel``
or ``.caffemodel.h5``) and a SolverState (``.solverstate`` or ``.solverstate.h5``) whose
``learned_net`` is the weights' path as written.  The history holds one blob per parameter
blob the train net owns, in layer order (Caffe's learnable_params_: lr_mult 0 blobs and
BatchNorm's statistics included, a shared blob once, under its owner), each in the parameter's
shape; AdaDelta and Adam append their second set after the first (trainnet's
``history_names`` order).

trainnet adds its resume record (data cursors, RNGs, loss window, parameter layout) where Caffe
does not look, so its own Caffe-format snapshots resume exactly.  A state Caffe wrote resumes
as far as it can: weights, history, iteration; the log says what it could not carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats import solverstate
from trainnet.formats.solverstate import CaffeState
from trainnet.formats.tensorfile import array_digest, digest_of_set
from trainnet.solver.snapshot import record_bytes
from trainnet.formats.caffemodel import trainnet_to_caffe, write_caffemodel
from trainnet.formats.caffemodel_h5 import write_caffemodel_h5

SUFFIXES = {"BINARYPROTO": (".caffemodel", ".solverstate"),
            "HDF5": (".caffemodel.h5", ".solverstate.h5")}
WRITERS = {"BINARYPROTO": solverstate.write_binaryproto, "HDF5": solverstate.write_hdf5}


def caffe_order(solver) -> list[int]:
    """The train net's parameter slots in Caffe's learnable_params_ order: by the owner layer's
    place in the net file, then blob index (a Scale folded into its BatchNorm stays a layer of
    its own here)."""
    place = {layer.name: i for i, layer in enumerate(solver.train_cfg.layer)}
    slots = solver.net.params.slots
    return sorted(range(len(slots)), key=lambda i: (place[slots[i].key[0]], slots[i].key[1]))


def current_step(cfg, it: int) -> int:
    """Caffe's current_step_ in a snapshot taken after ``it`` iterations.  Caffe updates it when
    it computes an iteration's rate, before counting the iteration, so it is the value of
    iteration it - 1: multistep's count of stepvalues reached, step's (it - 1) // stepsize; 0
    before any iteration and for the other policies."""
    if it == 0:
        return 0
    if cfg.lr_policy == "multistep":
        return sum(1 for value in cfg.stepvalue if value <= it - 1)
    if cfg.lr_policy == "step":
        return (it - 1) // cfg.stepsize
    return 0


def history_blobs(solver) -> list[np.ndarray]:
    store, history = solver.net.params, solver.rule.history_host()
    order = caffe_order(solver)
    return [store.view(history[name], i) for name in solver.rule.history_names for i in order]


def snapshot(solver, kind: str, tensors: dict[str, np.ndarray], meta: dict) -> tuple[Path, Path]:
    """Write the weights and state of ``solver`` at its iteration in ``kind``'s files, with
    trainnet's resume record (``tensors``, ``meta``) completed by what binds the state to its
    files: the iteration, the weights file's name and the digests of its blobs and of the
    history."""
    model_suffix, state_suffix = SUFFIXES[kind]
    weights = Path(f"{solver.prefix}_iter_{solver.iter}{model_suffix}")
    state = Path(f"{solver.prefix}_iter_{solver.iter}{state_suffix}")
    named = solver.net.params.named_host()
    history = history_blobs(solver)
    meta = {**meta, "iter": solver.iter, "weights": weights.name,
            "weights_sha256": digest_of_set({k: array_digest(v) for k, v in named.items()}),
            "history_sha256": _history_digest(history)}
    if kind == "HDF5":
        write_caffemodel_h5(weights, [layer.name for layer in solver.train_cfg.layer], named)
    else:
        write_caffemodel(weights, solver.net.plan.net_name, trainnet_to_caffe(named, solver.train_cfg))
    WRITERS[kind](state, CaffeState(solver.iter, str(weights), history,
                                    current_step(solver.cfg, solver.iter),
                                    record_bytes(tensors, meta)))
    return weights, state


def _history_digest(blobs: list[np.ndarray]) -> str:
    return digest_of_set({str(i): array_digest(np.asarray(b, np.float32))
                          for i, b in enumerate(blobs)})


def check_history(blobs: list[np.ndarray], meta: dict, path: Path) -> None:
    """The history blobs of a state trainnet wrote are those it recorded the digest of."""
    if "history_sha256" in meta and _history_digest(blobs) != meta["history_sha256"]:
        raise TrainnetError(f"{path}: file damaged: its history blobs do not match their "
                            "recorded digest")


def weights_of(state: CaffeState, meta: dict, path: Path) -> Optional[Path]:
    """The weights file of a state: the one its trainnet record names beside it, else
    ``learned_net`` as Caffe finds it."""
    if "weights" in meta and (Path(path).parent / meta["weights"]).is_file():
        return Path(path).parent / meta["weights"]
    return learned_net(state.learned_net, path)


def learned_net(name: str, path: Path) -> Optional[Path]:
    """The weights file a state names: against the working directory (where Caffe wrote it
    from), then beside the state file."""
    if not name:
        return None
    tried = [Path(name) if Path(name).is_absolute() else Path.cwd() / name,
             Path(path).parent / Path(name).name]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise TrainnetError(f"{path}: its weights file (learned_net) {name} is not found; tried "
                        + " and ".join(str(p) for p in dict.fromkeys(tried)))


def set_history(solver, blobs: list[np.ndarray], path: Path) -> None:
    store, rule = solver.net.params, solver.rule
    order, sets = caffe_order(solver), len(rule.history_names)
    if len(blobs) != sets * len(order):
        raise TrainnetError(f"{path}: {len(blobs)} history blobs, but this {rule.type} solver "
                            f"keeps {sets * len(order)} ({sets} per parameter blob, {len(order)} "
                            f"blobs){_suggest(len(blobs), len(order))}")
    history = {name: np.zeros(store.data.shape, np.float32) for name in rule.history_names}
    targets = [(name, i) for name in rule.history_names for i in order]
    for k, ((name, i), blob) in enumerate(zip(targets, blobs)):
        slot = store.slots[i]
        shape = tuple(slot.shape)
        legacy = (1,) * (4 - len(shape)) + shape
        if blob.shape != shape and not (blob.ndim == 4 and blob.shape == legacy):
            raise TrainnetError(f"{path}: history blob {k} (layer '{slot.key[0]}' blob "
                                f"{slot.key[1]}): shape {blob.shape} in the state but {shape} "
                                "in the net")
        store.view(history[name], i)[...] = blob.reshape(shape)
    rule.load_history(history)


def _suggest(count: int, params: int) -> str:
    if params and count == params:
        return "; that many suggests an SGD, Nesterov, AdaGrad or RMSProp solver"
    if params and count == 2 * params:
        return "; that many suggests an AdaDelta or Adam solver"
    return "; a state of another net?"
