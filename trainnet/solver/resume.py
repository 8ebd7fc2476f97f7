"""Snapshots of a Solver and resuming from them: what a state holds besides the weights and
the update history (the data readers' positions, the generators, the loss window), and the
checks that a state belongs to the solver resuming from it."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats import solverstate, tensorfile
from trainnet.formats.rngstate import rng_from_json, rng_to_json
from trainnet.formats.tensorfile import digest_of_set
from trainnet.solver import caffe_state, snapshot as snap
from trainnet.solver.weights import EXACT, WeightsReport, assign, read_weights


def snapshot(solver) -> Path:
    """Weights and state for the solver's iteration in snapshot_format; returns the state's path.
    The state names its weights file (beside it), the iteration, and a digest of the weights'
    blobs, so that resuming binds the two."""
    kind = solver.cfg.snapshot_kind
    if kind != "SAFETENSORS":
        weights, state = caffe_state.snapshot(solver, kind, *resume_record(solver))
    else:
        weights = Path(f"{solver.prefix}_iter_{solver.iter}.safetensors")
        state = Path(f"{solver.prefix}_iter_{solver.iter}.solverstate")
        digests = snap.save_weights(weights, solver.net.params, solver.net.plan.net_name,
                                    solver.iter)
        tensors, meta = resume_record(solver)
        tensors.update({f"history/{k}": v for k, v in solver.rule.history_host().items()})
        snap.save_state(state, tensors, {**meta, "iter": solver.iter, "weights": weights.name,
                                         "weights_sha256": digest_of_set(digests)})
    solver.log(f"Snapshotting to {weights} and {state}")
    keep = solver.cfg.snapshot_keep
    if keep:
        suffixes = caffe_state.SUFFIXES.get(kind, (".safetensors", ".solverstate"))
        for path in solver.files.keep_newest(keep, suffixes, solver.iter):
            solver.log(f"Removed {path} (snapshot_keep: {keep})")
    return state


def every_iteration_warning(solver) -> str:
    """What snapshot: 1 costs (a warning at the start of training)."""
    return ("Warning: snapshot: 1 writes the weights and the solver state at every iteration "
            f"({solver.net.params.data.nbytes * 2:,} bytes or more each time)"
            + ("" if solver.cfg.snapshot_keep else "; snapshot_keep: N keeps only the newest N"))


def _nets(solver):
    return (("train", solver.net), *((f"test{i}", n) for i, n in enumerate(solver.test_nets)))


def resume_record(solver) -> tuple[dict[str, np.ndarray], dict]:
    """What a snapshot holds besides weights, history and iteration, for an exact resume:
    the data readers' cursors and permutations, the RNGs, the loss window, and the solver
    type and parameter layout a resuming solver must match."""
    tensors = {}
    for tag, net in _nets(solver):
        for layer, st in net.resume_states.items():
            for key, value in st.get_state().items():
                tensors[f"data/{tag}/{layer}/{key}"] = value
    meta = {"type": solver.cfg.type, "rng": rng_to_json(solver.rng),
            "test_rng": rng_to_json(solver.test_rng), "losses": list(solver.losses),
            "layout": _layout(solver)}
    return tensors, meta


def _layout(solver) -> list:
    return [[key, list(view.shape)] for key, view in solver.net.params.named().items()]


class ForeignState(TrainnetError):
    """A whole solver state, but of another solver type or another net."""


def check_record(solver, meta: dict, state_path: Path) -> None:
    """Refuse a state of another solver type or another net."""
    if meta["type"] != solver.cfg.type:
        raise ForeignState(f"{state_path}: the state is of a {meta['type']} solver, this solver "
                            f"is {solver.cfg.type}")
    if meta["layout"] != _layout(solver):
        raise ForeignState(f"{state_path}: the state is of another net (its parameter blobs "
                            "differ in names or shapes from this net's)")


def apply_record(solver, tensors: dict[str, np.ndarray], meta: dict, state_path: Path) -> None:
    for tag, net in _nets(solver):
        for layer, st in net.resume_states.items():
            prefix = f"data/{tag}/{layer}/"
            st.set_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    try:
        rng_from_json(solver.rng, meta["rng"])
        rng_from_json(solver.test_rng, meta["test_rng"])
    except (ValueError, TypeError, KeyError) as exc:
        raise TrainnetError(f"{state_path}: damaged solver state (random generator: {exc})") from None
    solver.losses.clear()
    solver.losses.extend(meta["losses"])


def snapshot_weights(solver, weights: Path, meta: dict, state_path: Path) -> WeightsReport:
    """Load the weights of a snapshot: every parameter blob of the net, nothing else, and (when
    the state records them) the very blobs the state was saved with."""
    bound = "weights_sha256" in meta
    report, blobs = read_weights(weights, solver.net.params, EXACT, digests=bound)
    # a layer of the net in the file's skipped ones shares its blobs (no own blobs here)
    extra = set(report.skipped) - {layer.name for layer in solver.train_cfg.layer}
    if extra:
        raise TrainnetError(f"{weights}: does not match the net of {state_path} (it holds layers "
                            f"the net lacks: {', '.join(sorted(extra))})")
    held = report.metadata.get("iter")
    if "iter" in meta and held is not None and held != str(meta["iter"]):
        raise TrainnetError(f"{state_path}: its weights file {weights} holds the weights of "
                            f"iteration {held}, the state is of iteration {meta['iter']}")
    if bound and digest_of_set(report.digests) != meta["weights_sha256"]:
        raise TrainnetError(f"{state_path}: {weights} is not the weights file this state was saved "
                            "with (its blobs differ: another run's, or changed since)")
    assign(solver.net.params, blobs)
    return report


def restore(solver, state_path: Path) -> None:
    """Continue exactly where a snapshot left off (a Caffe state: as far as it can say)."""
    if not tensorfile.is_safetensors(state_path):
        restore_caffe(solver, state_path)
        return
    tensors, meta = snap.load_state(state_path)
    check_record(solver, meta, state_path)
    snapshot_weights(solver, state_path.parent / meta["weights"], meta, state_path)
    try:
        solver.rule.load_history({k[len("history/"):]: v for k, v in tensors.items()
                                  if k.startswith("history/")})
    except ValueError as exc:
        raise TrainnetError(f"{state_path}: damaged solver state ({exc})") from None
    apply_record(solver, tensors, meta, state_path)
    solver.iter = meta["iter"]
    _resumed(solver, state_path)


def _resumed(solver, path: Path, say: str = "Resumed from {path} at iteration {iter}") -> None:
    """Say so, and mark it in the run's log: the iterations from here on may be there already."""
    if say:
        solver.log(say.format(path=path, iter=solver.iter))
    solver.files.mark(event="resume", iter=solver.iter, **{"from": str(path)})


STATE_NAME = re.compile(r"^(.*)_iter_(\d+)\.solverstate(\.h5)?$")


def _states(folder: Path) -> dict[str, list[tuple[int, float, Path]]]:
    """The solver states in ``folder`` by snapshot prefix (the file name before ``_iter_N``)."""
    found: dict[str, list[tuple[int, float, Path]]] = {}
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            m = STATE_NAME.match(entry.name)
            if m and entry.is_file():
                found.setdefault(m.group(1), []).append((int(m.group(2)), entry.stat().st_mtime,
                                                         entry))
    return found


def snapshots(where: str, own: str | None = None) -> list[Path]:
    """The solver states of a run, newest (highest iteration) first: those of the snapshot
    prefix ``where``; or, when ``where`` is a folder, those of the prefix ``own`` (the solver's
    own) when it has states there, else those of the one prefix that has; states of several
    other prefixes are ambiguous: an error naming them."""
    path = Path(where)
    folder, stem = (path, None) if path.is_dir() else (path.parent, path.name)
    found = _states(folder)
    if stem is None:
        mine = Path(own + "_iter_") if own is not None else None
        if mine is not None and mine.parent.resolve() == folder.resolve() \
                and mine.name[:-len("_iter_")] in found:
            stem = mine.name[:-len("_iter_")]
        elif len(found) > 1:
            names = ", ".join(str(folder / name) for name in sorted(found))
            raise TrainnetError(f"--resume {where}: the folder holds the snapshots of several runs "
                                f"({names}) and none of this solver's prefix: name one as "
                                "--resume PREFIX")
        else:
            stem = next(iter(found), None)
    return [entry for _, _, entry in sorted(found.get(stem, []), reverse=True)]


def resume_newest(solver, where: str) -> Path:
    """Restore the newest complete snapshot under ``where`` (a prefix or a folder, see
    ``snapshots``): one whose state and weights are whole and bound to each other.  A newer one
    that is not is skipped with a line in the log, as is one of another net or solver type (said
    so); none at all is an error."""
    states = snapshots(where, solver.prefix)
    if not states:
        raise TrainnetError(f"nothing to resume: no solver state (*_iter_N.solverstate) under "
                            f"{where}")
    foreign = 0
    for state in states:
        try:
            restore(solver, state)
            return state
        except ForeignState as exc:
            foreign += 1
            solver.log(f"Warning: skipping {state}, not a state of this net and solver: "
                       f"{str(exc).removeprefix(f'{state}: ')}")
        except TrainnetError as exc:
            solver.log(f"Warning: skipping {state}, not a complete snapshot: "
                       f"{str(exc).removeprefix(f'{state}: ')}")
    if foreign == len(states):
        raise TrainnetError(f"nothing to resume under {where}: its {len(states)} solver state(s) "
                            "are of another net or solver type (see the warnings above)")
    raise TrainnetError(f"nothing to resume under {where}: none of its {len(states)} solver "
                        "state(s) is a complete snapshot of this net (see the warnings above)")


def restore_caffe(solver, path: Path) -> None:
    """Resume ``solver`` from a Caffe-format state (Caffe's own, or trainnet's with its record,
    which binds the state to its weights and history as trainnet's own states are)."""
    state = solverstate.read_state(path)
    if state.iter < 0:
        raise TrainnetError(f"{path}: damaged solver state (iter: {state.iter} is not a "
                            "non-negative integer)")
    record = snap.record_from_bytes(state.extra, path) if state.extra is not None else None
    meta = record[1] if record is not None else {}
    if record is not None:
        check_record(solver, meta, path)
        if meta.get("iter", state.iter) != state.iter:
            raise TrainnetError(f"{path}: damaged solver state (iteration {state.iter}, but its "
                                f"record says {meta['iter']})")
    weights = caffe_state.weights_of(state, meta, path)
    if record is not None and weights is None:
        raise TrainnetError(f"{path}: damaged solver state (it names no weights file)")
    if record is not None:
        snapshot_weights(solver, weights, meta, path)
        caffe_state.check_history(state.history, meta, path)
    elif weights is not None:
        report, blobs = read_weights(weights, solver.net.params, EXACT)
        assign(solver.net.params, blobs)
        for line in report.lines():
            solver.log(line)
    else:
        solver.log(f"{path} names no weights file (learned_net): the weights are the fillers'")
    caffe_state.set_history(solver, state.history, path)
    solver.iter = state.iter
    if record is not None:
        apply_record(solver, *record, path)
        _resumed(solver, path)
        return
    expected = caffe_state.current_step(solver.cfg, state.iter)
    if state.current_step != expected:
        solver.log(f"The state's current_step is {state.current_step}, but lr_policy "
                   f"{solver.cfg.lr_policy} gives {expected} at iteration {state.iter}: trainnet "
                   "derives the learning rate from the iteration")
    _resumed(solver, path, "")
    solver.log(f"Resumed from {path} (a Caffe solver state) at iteration {solver.iter}. It cannot "
               "carry the data cursor (the data starts from the beginning of its source), the "
               "random generators (they go on from this run's seed) or the smoothed loss (it "
               "starts empty)")
