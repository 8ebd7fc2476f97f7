"""Key-value databases of records, as Caffe keeps datasets: LMDB (``lmdb``) and LevelDB
(``plyvel``, the optional ``leveldb`` extra).

``open_database`` gives a read-only view with the keys in Caffe's cursor order (byte order,
which is how both stores iterate) and thread-safe lookups, shared per process (LMDB must not
be opened twice by one process, and LevelDB locks its folder).  ``create_database`` writes a new
one into a temporary folder beside the target and renames it into place when complete, so an
interrupted conversion leaves nothing that looks like a dataset.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Optional

from trainnet.data.output import StagedFolder
from trainnet.errors import TrainnetError

BACKENDS = ("LMDB", "LEVELDB")
COMMIT_EVERY = 1000  # records per transaction, as Caffe's converters
_PLYVEL_HINT = "LevelDB needs the plyvel package: pip install 'trainnet[leveldb]'"


def _plyvel():
    try:
        import plyvel
    except ImportError:
        raise TrainnetError(_PLYVEL_HINT) from None
    return plyvel


def detect_backend(path: Path) -> Optional[str]:
    """LMDB or LEVELDB by the folder's files (``data.mdb``; ``CURRENT``), else None."""
    path = Path(path)
    if (path / "data.mdb").is_file():
        return "LMDB"
    if (path / "CURRENT").is_file():
        return "LEVELDB"
    return None


class Database:
    """A read-only record store: ``keys`` in cursor order, ``get`` from any thread."""

    def __init__(self, path: Path, backend: str):
        self.path, self.backend = Path(path), backend
        self._local = threading.local()
        if backend == "LMDB":
            import lmdb

            self._errors = (lmdb.Error,)
            try:
                self._env = lmdb.open(str(path), readonly=True, lock=False, readahead=False,
                                      max_readers=512)
            except lmdb.Error as exc:
                raise TrainnetError(f"{path}: cannot open as an LMDB database ({exc})") from None
            # a truncated data.mdb would fault (SIGBUS) when a missing page is touched
            need = (self._env.info()["last_pgno"] + 1) * self._env.stat()["psize"]
            size = (Path(path) / "data.mdb").stat().st_size
            if size < need:
                self._env.close()
                raise TrainnetError(f"{path}: a truncated LMDB database (data.mdb holds {size} bytes, "
                                    f"its pages reach {need}); copy or convert it again")
        else:
            plyvel = _plyvel()
            self._errors = (plyvel.Error,)
            try:
                self._db = plyvel.DB(str(path), create_if_missing=False, paranoid_checks=True)
            except (plyvel.Error, OSError) as exc:
                raise TrainnetError(f"{path}: cannot open as a LevelDB database ({exc})") from None
        self._keys: Optional[list[bytes]] = None

    def _damaged(self, exc: Exception) -> TrainnetError:
        """A damaged store (a page of the wrong type or not found, LevelDB's corruption)."""
        return TrainnetError(f"{self.path}: a damaged {self.backend} database ({exc}); copy or "
                             "convert it again")

    @property
    def keys(self) -> list[bytes]:
        """Every key in cursor order (listed on first use: a pass over the keys)."""
        if self._keys is None:
            try:
                if self.backend == "LMDB":
                    with self._env.begin() as txn:
                        self._keys = list(txn.cursor().iternext(keys=True, values=False))
                else:
                    self._keys = list(self._db.iterator(include_value=False,
                                                         verify_checksums=True))
            except self._errors as exc:
                raise self._damaged(exc) from None
        return self._keys

    def __len__(self) -> int:
        return len(self.keys)

    def first(self) -> Optional[tuple[bytes, bytes]]:
        """The first record in cursor order (what Caffe reads to shape the layer), or None."""
        try:
            if self.backend == "LMDB":
                with self._env.begin() as txn:
                    cursor = txn.cursor()
                    return (cursor.key(), cursor.value()) if cursor.first() else None
            return next(self._db.iterator(verify_checksums=True), None)
        except self._errors as exc:
            raise self._damaged(exc) from None

    def close(self) -> None:
        if self.backend == "LMDB":
            self._env.close()
        else:
            self._db.close()

    def get(self, key: bytes) -> Optional[bytes]:
        """The value of ``key``, or None when the database has no such key."""
        try:
            if self.backend == "LEVELDB":
                return self._db.get(key, verify_checksums=True)  # LevelDB's blocks carry CRCs
            txn = getattr(self._local, "txn", None)
            if txn is None:  # one long read transaction per thread: a consistent, lock-free view
                txn = self._local.txn = self._env.begin(buffers=False)
            return txn.get(key)
        except self._errors as exc:
            raise self._damaged(exc) from None


_OPEN: dict[tuple[str, str], Database] = {}
_OPEN_LOCK = threading.Lock()


def open_database(path: Path, backend: str) -> Database:
    """The database at ``path`` (a folder), opened once per process."""
    path = Path(path)
    if not path.is_dir():
        raise TrainnetError(f"{path}: not a folder, so not an {backend} database")
    found = detect_backend(path)
    if found is None:
        raise TrainnetError(f"{path}: not a database folder (no LMDB data.mdb, no LevelDB CURRENT)")
    if found != backend:
        raise TrainnetError(f"{path} is an {found} database, but backend {backend} is asked for; "
                            f"set backend: {found}")
    key = (backend, os.path.realpath(path))
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = Database(path, backend)
        return _OPEN[key]


@atexit.register
def _close_all() -> None:
    """Close cached handles before the interpreter tears modules down (plyvel's own cleanup
    at exit would report an error)."""
    with _OPEN_LOCK:
        for db in _OPEN.values():
            db.close()
        _OPEN.clear()


def forget_database(path: Path) -> None:
    """Drop a cached handle (before the database is replaced on disk)."""
    real = os.path.realpath(path)
    with _OPEN_LOCK:
        for key in [k for k in _OPEN if k[1] == real]:
            del _OPEN[key]


class DatabaseWriter:
    """A new database filled by ``put`` and made visible at ``path`` by ``close``.

    Used as a context manager: an exception inside the block removes the partial database.
    """

    def __init__(self, path: Path, backend: str):
        if backend not in BACKENDS:
            raise TrainnetError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.path, self.backend = Path(path), backend
        self.stage = StagedFolder(self.path)
        self.tmp = self.stage.tmp
        self.pending: list[tuple[bytes, bytes]] = []
        self.count = 0
        try:
            if backend == "LMDB":
                import lmdb

                self._lmdb = lmdb
                self._map_size = 1 << 30
                self._env = lmdb.open(str(self.tmp), map_size=self._map_size, subdir=True)
            else:
                self._db = _plyvel().DB(str(self.tmp), create_if_missing=True,
                                        error_if_exists=True, write_buffer_size=256 << 20)
        except BaseException:
            self.stage.abort()
            raise

    def put(self, key: bytes, value: bytes) -> None:
        self.pending.append((key, value))
        self.count += 1
        if len(self.pending) >= COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        if not self.pending:
            return
        if self.backend == "LEVELDB":
            with self._db.write_batch() as batch:
                for key, value in self.pending:
                    batch.put(key, value)
        else:
            while True:
                try:
                    with self._env.begin(write=True) as txn:
                        for key, value in self.pending:
                            txn.put(key, value)
                    break
                except self._lmdb.MapFullError:  # grow the map and write the batch again
                    self._map_size *= 2
                    self._env.set_mapsize(self._map_size)
        self.pending.clear()

    def close(self) -> None:
        """Commit what is pending and move the finished database to ``path``."""
        self.commit()
        self._close_handle()
        self.stage.finish()

    def abort(self) -> None:
        self._close_handle()
        self.stage.abort()

    def _close_handle(self) -> None:
        if self.backend == "LMDB":
            self._env.close()
        else:
            self._db.close()

    def __enter__(self) -> "DatabaseWriter":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def create_database(path: Path, backend: str = "LMDB") -> DatabaseWriter:
    return DatabaseWriter(path, backend.upper())
