"""Caffe's solver state files: a SolverState as binaryproto (``.solverstate``, snapshot_format
BINARYPROTO) or as HDF5 (``.solverstate.h5``, snapshot_format HDF5).

Both hold the iteration, ``learned_net`` (the weights file, as the path Caffe wrote), the update
history (one blob per parameter blob, in Caffe's order) and ``current_step``.  What an exact
resume needs beyond that, trainnet stores where Caffe does not look: field 1000 of the message
(Caffe's parser keeps it as an unknown field) or the group ``trainnet`` of the HDF5 file.
``read_state`` tells a solver state from other files by content, not by suffix, and says what
any other file is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from google.protobuf.message import DecodeError

from trainnet.errors import TrainnetError
from trainnet.formats import caffe_pb
from trainnet.formats.atomic import atomic_write
from trainnet.formats.blobproto import (MAX_BYTES, blob_array, blob_proto, parse, read_bytes,
                                        text, unknown_fields)
from trainnet.formats import hdf5

EXTRA_GROUP = "trainnet"   # the HDF5 group with trainnet's resume record
WHAT = "solver state (trainnet's or Caffe's)"


@dataclass
class CaffeState:
    iter: int
    learned_net: str
    history: list[np.ndarray] = field(default_factory=list)
    current_step: int = 0
    extra: Optional[bytes] = None   # trainnet's resume record; None in a state Caffe wrote


def write_binaryproto(path: Path, state: CaffeState) -> None:
    """The fields in the order ``iter``, trainnet's record, ``learned_net``, ``history``,
    ``current_step`` (a parser takes them in any order): Caffe's parser and a check for a
    solver state read ``iter`` first, as Caffe writes it, and a file cut short anywhere lacks
    ``current_step``, so ``read_state`` can tell it from a whole one."""
    head = caffe_pb.TrainnetSolverState(iter=state.iter)
    if state.extra is not None:
        head.trainnet = state.extra
    rest = caffe_pb.SolverState(learned_net=state.learned_net, current_step=state.current_step)
    rest.history.extend(blob_proto(h) for h in state.history)
    payload = head.SerializeToString() + rest.SerializeToString()
    if len(payload) > MAX_BYTES:
        raise TrainnetError(f"{path}: the solver state needs {len(payload) / 2**30:.1f} GiB, more "
                            "than a protobuf message may hold (2 GiB); use snapshot_format: HDF5")
    atomic_write(Path(path), payload)


def write_hdf5(path: Path, state: CaffeState) -> None:
    def fill(f):
        hdf5.save_int(f, "iter", state.iter)
        hdf5.save_string(f, "learned_net", state.learned_net)
        hdf5.save_int(f, "current_step", state.current_step)
        history = f.create_group("history")
        for i, blob in enumerate(state.history):
            hdf5.save_blob(history, str(i), blob)
        if state.extra is not None:
            f.create_group(EXTRA_GROUP).create_dataset(
                "resume", data=np.frombuffer(state.extra, np.uint8))

    hdf5.write_hdf5(path, fill)


def read_state(path: Path) -> CaffeState:
    """A Caffe solver state (binaryproto or HDF5, by content); any other file is refused with
    what it is (a Caffe model, an HDF5 model, a truncated or foreign file)."""
    path = Path(path)
    if hdf5.is_hdf5(path):
        return _read_hdf5(path)
    data = read_bytes(path, "solver state")
    state = parse(caffe_pb.TrainnetSolverState(), data, path, WHAT)
    if unknown_fields(state) or not state.HasField("iter"):
        if _is_caffemodel(data):
            raise TrainnetError(f"{path}: a Caffe model (.caffemodel), not a solver state: resume "
                                "from the .solverstate written beside it, or start from these "
                                "weights with --weights")
        raise TrainnetError(f"{path}: not a {WHAT}, or a truncated or corrupt one (it holds "
                            "fields a SolverState has not, or lacks the iteration)")
    _refuse_partial(path, state)
    history = [blob_array(b, f"{path}: history blob {i}") for i, b in enumerate(state.history)]
    return CaffeState(state.iter, text(state.learned_net, f"{path}: learned_net"), history,
                      state.current_step, state.trainnet if state.HasField("trainnet") else None)


def _refuse_partial(path: Path, state) -> None:
    """A state cut short between two fields parses; what it lacks tells.  Caffe writes every
    field, ``current_step`` after the history, so a state with history but no current_step, or
    without learned_net, was cut short (only a Caffe of before 2015, or a state written by hand,
    lacks current_step, and then holds no history: a resume counts the blobs against the net).
    trainnet writes its record second and current_step last: with a record, both must be there."""
    lacking = [f for f in ("learned_net", "current_step") if not state.HasField(f)]
    if not state.HasField("trainnet") and not len(state.history) and lacking == ["current_step"]:
        return
    if lacking:
        raise TrainnetError(f"{path}: a truncated solver state (it lacks {' and '.join(lacking)}, "
                            "which every solver state holds)")


def _is_caffemodel(data: bytes) -> bool:
    net = caffe_pb.NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return False
    return bool(net.layer or net.layers)


def _read_hdf5(path: Path) -> CaffeState:
    where = str(path)
    with hdf5.open_hdf5(path, "solver state") as f:
        def has(name: str) -> bool:
            return hdf5.member(f, name, where) is not None

        if has("data") and not has("iter"):
            raise TrainnetError(f"{path}: an HDF5 Caffe model (.caffemodel.h5), not a solver "
                                "state: resume from the .solverstate.h5 written beside it, or "
                                "start from these weights with --weights")
        if not has("iter") or not has("history"):
            raise TrainnetError(f"{path}: an HDF5 file, but not a Caffe solver state (it lacks "
                                f"{'iter' if not has('iter') else 'the history group'})")
        hdf5.check_links(f, where)
        group = f["history"]
        if not isinstance(group, hdf5.h5py.Group):
            raise TrainnetError(f"{path}: 'history' is not a group: a corrupt solver state")
        names = [str(i) for i in range(len(group))]
        history = [hdf5.load_blob(group, n, where) for n in names]
        extra = None
        if has(EXTRA_GROUP):
            if not isinstance(f[EXTRA_GROUP], hdf5.h5py.Group):
                raise TrainnetError(f"{path}: '{EXTRA_GROUP}' is not a group: a corrupt solver "
                                    "state")
            extra = np.asarray(hdf5.load(f[EXTRA_GROUP], "resume", where), np.uint8).tobytes()
            lacking = [n for n in ("learned_net", "current_step") if not has(n)]
            if lacking:
                raise TrainnetError(f"{path}: a damaged solver state (it lacks "
                                    f"{' and '.join(lacking)}, which trainnet writes in every one)")
        return CaffeState(hdf5.load_int(f, "iter", where),
                          hdf5.load_string(f, "learned_net", where) if has("learned_net") else "",
                          history,
                          hdf5.load_int(f, "current_step", where) if has("current_step") else 0,
                          extra)
