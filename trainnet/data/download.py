"""Fetch MNIST's four IDX files, verify each against its published sha256, write atomically;
the download, checksum and by-hand helpers that the CIFAR-10 download shares."""

from __future__ import annotations

import hashlib
import os
import secrets
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from trainnet.data.progress import Log, Progress, quiet_log, quiet_progress
from trainnet.errors import TrainnetError

DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # copy of Yann LeCun's files
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_BYTES = {"train-images-idx3-ubyte.gz": 9912422, "train-labels-idx1-ubyte.gz": 28881,
               "t10k-images-idx3-ubyte.gz": 1648877, "t10k-labels-idx1-ubyte.gz": 4542}
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(target: Path, sha256: str) -> bool:
    """Whether ``target`` is a file with this checksum (one that cannot be read is not)."""
    try:
        return target.is_file() and sha256_of(target) == sha256
    except OSError:
        return False


def make_folder(dest: Path) -> Path:
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainnetError(f"{dest}: cannot create the folder ({exc.strerror or exc})") from None
    return dest


def by_hand(names, dest: Path) -> str:
    """What to do without network: where the files go and how configs then find them."""
    return (f"to place the files by hand, put {', '.join(names)} in {dest} "
            f"(the layout is <dir>/{dest.name}/<file>) and set TRAINNET_DATA=<dir>")


def copy_hashed(source: BinaryIO, out: BinaryIO, task: str, total: Optional[int],
                progress: Optional[Progress] = None, limit: Optional[int] = None) -> str:
    """Copy ``source`` into ``out`` in chunks, reporting bytes; the sha256 of what was copied.
    With ``limit`` (the size the file must have) at most one byte more is copied: a source that
    sends more (a hostile mirror, an archive member inflating without end) fills no disk, and
    its checksum fails."""
    digest, progress = hashlib.sha256(), progress or quiet_progress
    done = 0
    progress(task, 0, total, "bytes")
    for block in iter(lambda: source.read(CHUNK), b""):
        if limit is not None and done + len(block) > limit:
            block = block[:limit + 1 - done]
        digest.update(block)
        out.write(block)
        done += len(block)
        progress(task, done, total, "bytes")
        if limit is not None and done > limit:
            break
    if total != done:
        progress(task, done, done, "bytes")
    return digest.hexdigest()


def download(url: str, out: BinaryIO, timeout: float, hint: str,
             progress: Optional[Progress] = None, limit: Optional[int] = None) -> str:
    """Copy ``url`` into the open file ``out`` (at most ``limit`` bytes and one more); returns
    the sha256 of what came.  A network failure is a TrainnetError that says so and ends with
    ``hint``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            return copy_hashed(response, out, url.rsplit("/", 1)[-1], total, progress, limit)
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, a bad URL
        reason = getattr(exc, "reason", None) or exc
        raise TrainnetError(f"downloading {url} failed ({reason}); this machine may have no "
                            f"network access; {hint}") from None


def install(target: Path, sha256: str, fill: Callable[[BinaryIO], str], source: str,
            hint: str) -> None:
    """Write ``target`` atomically: ``fill`` writes a temp file beside it and returns the
    sha256 of what it wrote, which must be ``sha256`` for the file to be renamed into place."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
    try:
        try:
            out = open(tmp, "xb")  # not mkstemp: the file gets the umask's permissions
        except OSError as exc:
            raise TrainnetError(f"{target.parent}: cannot write there ({exc.strerror or exc})") from None
        with out:
            got = fill(out)
        if got != sha256:
            raise TrainnetError(f"{source}: checksum mismatch (sha256 {got}, expected {sha256}); "
                                f"the file was discarded; try another mirror, or {hint}")
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise TrainnetError(f"{target}: cannot be replaced ({exc.strerror or exc}); move it "
                                "away and run again") from None
    finally:
        tmp.unlink(missing_ok=True)


def fetch(url: str, target: Path, sha256: str, timeout: float, hint: str,
          progress: Optional[Progress] = None, limit: Optional[int] = None) -> None:
    """Download ``url`` to ``target``, atomically and only when its checksum is ``sha256``."""
    install(target, sha256, lambda out: download(url, out, timeout, hint, progress, limit), url,
            hint)


def download_mnist(dest: Path, mirror: str = DEFAULT_MIRROR, timeout: float = 30,
                   log: Optional[Log] = None, progress: Optional[Progress] = None) -> list[Path]:
    """Fetch the four MNIST files into ``dest`` (e.g. ``$TRAINNET_DATA/mnist``).

    Files already there with the right checksum are kept.  ``mirror`` is a base URL
    (``https://...``, or ``file://`` for a local copy).  Returns the four paths.
    """
    dest = make_folder(dest)
    log = log or quiet_log
    base = mirror if mirror.endswith("/") else mirror + "/"
    paths = []
    for name, sha256 in MNIST_SHA256.items():
        target = dest / name
        paths.append(target)
        if verified(target, sha256):
            log(f"{target}: present, checksum ok")
            continue
        log(f"{target}: downloading {base + name}")
        fetch(base + name, target, sha256, timeout, by_hand(MNIST_SHA256, dest), progress,
              MNIST_BYTES[name])
    return paths
