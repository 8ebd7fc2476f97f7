"""A training run's files under its snapshot prefix: the JSON log, the lock that keeps a
second run off the same prefix, and the snapshots kept.

The prefix is Caffe's: a path prefix, not a folder, so ``snapshot_prefix: "out/"`` writes
``out/_iter_100.caffemodel`` and ``out/_log.jsonl``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from pathlib import Path
from typing import IO, Optional

from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.netcfg.as_run import MARKER, is_as_run

try:
    import fcntl
except ImportError:  # not on Windows: the pid in the lock file is then the only guard
    fcntl = None


class LogWriteError(TrainnetError):
    """The run's log could not be written mid-run: the solver snapshots and stops."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def snapshot_prefix(cfg) -> str:
    """Caffe's snapshot prefix of a solver config: snapshot_prefix, by default the solver
    file's path without its extension."""
    if cfg.snapshot_prefix:
        return cfg.snapshot_prefix
    solver_file = Path(cfg.file) if cfg.file else Path("trainnet")
    return str(solver_file.with_suffix(""))


class RunFiles:
    """The files a run writes beside its snapshots, all named ``{prefix}...``."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.log_path = Path(f"{prefix}_log.jsonl")
        self.lock_path = Path(f"{prefix}.lock")
        self._log: Optional[IO[str]] = None
        self._lock: Optional[int] = None
        self.notes: list[str] = []   # what the solver should say (a lock the folder cannot hold)
        self.pending: list[dict] = []  # records made before the log opened (a resume's event)
        # files to write once the prefix is this run's (the solver and nets as run), by path
        self.configs: dict[Path, str] = {}
        # the files the run read its config from: never overwritten by ``configs``
        self.inputs: list[Path] = []

    def snapshot_path(self, iteration: int, suffix: str) -> Path:
        return Path(f"{self.prefix}_iter_{iteration}{suffix}")

    # --- before the first iteration -------------------------------------------------------
    def open(self) -> None:
        """Take the prefix for this run and open the log: every output problem (a read-only
        folder, a file where a folder should be, a name too long, another run on the same
        prefix) is one error here, before any work is done."""
        where = self.log_path.parent
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainnetError(f"snapshot prefix {self.prefix}: cannot create the folder {where} "
                                f"({_why(exc)})") from None
        self._take_lock()
        try:
            self._check_configs()
            self._open_log()
            for path, text in self.configs.items():
                atomic_write(path, text.encode("utf-8"))
        except TrainnetError:
            self.close()
            raise
        self._flush_pending()

    def _check_configs(self) -> None:
        """Refuse to write an as-run config over a file this run reads, or over any file that
        trainnet did not write as one (its first line is not ``MARKER``): a user's own solver
        or net that happens to have the name."""
        def same(a: Path, b: Path) -> bool:
            with contextlib.suppress(OSError):
                return a.resolve() == b.resolve() or os.path.samefile(a, b)
            return False

        for path in self.configs:
            if any(same(path, read) for read in self.inputs):
                raise TrainnetError(f"{path}: this run reads it, and its as-run config would be "
                                    "written over it: give the run another snapshot_prefix")
            if os.path.lexists(path) and not is_as_run(path):
                raise TrainnetError(f"{path}: exists and was not written by trainnet (it does not "
                                    f"start with '{MARKER}'), and this run's as-run config would "
                                    "be written over it: give the run another snapshot_prefix, "
                                    "or move the file")

    def mark(self, **fields) -> None:
        """A record for the log, written when it opens (now, if it is open)."""
        self.pending.append(fields)
        if self._log is not None:
            self._flush_pending()

    def _flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        for fields in pending:
            self.record(**fields)

    def _take_lock(self) -> None:
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise TrainnetError(f"snapshot prefix {self.prefix}: cannot write in "
                                    f"{self.lock_path.parent} ({_why(exc)})") from None
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    self.notes.append(f"{self.lock_path}: this file system cannot lock files "
                                      f"({_why(exc)}); the pid in the lock file is the only sign "
                                      "of this run to another one on the same prefix")
                    break
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise TrainnetError(f"{self.lock_path}: cannot lock ({_why(exc)})") from None
                raise TrainnetError(f"snapshot prefix {self.prefix} is in use by another run "
                                    f"({self._holder()}, lock file {self.lock_path}): give this "
                                    "run another snapshot_prefix, or wait for that one") from None
            # the holder before us may have removed the file between our open and our lock
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino:
                    break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def _holder(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            return f"pid {int(self.lock_path.read_text().split()[0])}"
        return "pid unknown"

    def _open_log(self) -> None:
        try:
            self._log = open(self.log_path, "a", encoding="utf-8")
        except OSError as exc:
            raise TrainnetError(f"{self.log_path}: cannot write the run's log ({_why(exc)})") from None

    def close(self) -> None:
        """Close the log and give the prefix back (the lock file goes with it)."""
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()  # while still holding it: a waiter re-checks the inode
            os.close(self._lock)
            self._lock = None

    # --- while running --------------------------------------------------------------------
    def record(self, **fields) -> None:
        """One JSON line in the log, flushed; a failure is a LogWriteError."""
        try:
            if self._log is None:  # records outside ``open`` (a solver driven step by step)
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._open_log()
                self._flush_pending()
            self._log.write(json.dumps(fields) + "\n")
            self._log.flush()
        except (OSError, TrainnetError) as exc:
            why = _why(exc) if isinstance(exc, OSError) else str(exc)
            if self._log is not None:
                with contextlib.suppress(OSError):
                    self._log.close()
                self._log = None
            raise LogWriteError(f"{self.log_path}: cannot write the run's log ({why})") from None

    def keep_newest(self, keep: int, suffixes: tuple[str, str], current: int) -> list[Path]:
        """Delete all but the ``keep`` newest snapshots of this prefix up to iteration
        ``current`` (the one just written): snapshots of later iterations belong to another
        run, or to the one this resumed from, and are left alone.  States go first, so that a
        state never outlives its weights; returns what was deleted."""
        pattern = re.compile(re.escape(Path(self.prefix + "_iter_").name) + r"(\d+)"
                             + "(" + "|".join(re.escape(s) for s in suffixes) + ")$")
        folder = Path(self.prefix + "_iter_").parent
        found: dict[int, list[Path]] = {}
        with contextlib.suppress(OSError):
            for entry in folder.iterdir():
                m = pattern.match(entry.name)
                if m and int(m.group(1)) <= current:
                    found.setdefault(int(m.group(1)), []).append(entry)
        deleted = []
        for it in sorted(found)[:-keep] if keep > 0 else []:
            for path in sorted(found[it], key=lambda p: not p.name.endswith(suffixes[1])):
                with contextlib.suppress(OSError):
                    path.unlink()
                    deleted.append(path)
        return deleted
