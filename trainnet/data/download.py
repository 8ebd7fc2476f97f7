"""Fetch MNIST's four IDX files, verify each against its published sha256, write atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from trainnet.errors import TrainnetError

DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # copy of Yann LeCun's files
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(dest: Path) -> str:
    return (f"to place the files by hand, put {', '.join(MNIST_SHA256)} in {dest} "
            f"(the layout is <dir>/mnist/<file>) and set TRAINNET_DATA=<dir>")


def _fetch(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Download ``url`` to a temp file beside ``target``; rename it there once its hash matches."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        digest.update(block)
                        out.write(block)
            except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, a bad URL
                reason = getattr(exc, "reason", None) or exc
                raise TrainnetError(
                    f"downloading {url} failed ({reason}); this machine may have no network "
                    f"access; {_by_hand(target.parent)}") from None
        if digest.hexdigest() != sha256:
            raise TrainnetError(
                f"{url}: checksum mismatch (sha256 {digest.hexdigest()}, expected {sha256}); "
                f"the file was discarded; try another mirror, or {_by_hand(target.parent)}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download_mnist(dest: Path, mirror: str = DEFAULT_MIRROR, timeout: float = 30,
                   log: Optional[Callable[[str], None]] = None) -> list[Path]:
    """Fetch the four MNIST files into ``dest`` (e.g. ``$TRAINNET_DATA/mnist``).

    Files already there with the right checksum are kept.  ``mirror`` is a base URL
    (``https://...``, or ``file://`` for a local copy).  Returns the four paths.
    """
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainnetError(f"{dest}: cannot create the folder ({exc.strerror or exc})") from None
    base = mirror if mirror.endswith("/") else mirror + "/"
    paths = []
    for name, sha256 in MNIST_SHA256.items():
        target = dest / name
        paths.append(target)
        if target.is_file() and sha256_of(target) == sha256:
            if log:
                log(f"{target}: present, checksum ok")
            continue
        if log:
            log(f"{target}: downloading {base + name}")
        _fetch(base + name, target, sha256, timeout)
    return paths
