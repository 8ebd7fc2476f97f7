"""Fetch CIFAR-10's binary version and keep the seven files Caffe's scripts use.

The archive (``cifar-10-binary.tar.gz``) is downloaded into an anonymous temporary file; only
its ``cifar-10-batches-bin/`` members with the expected names are read, each into a temporary
file beside its target that is renamed into place once its published sha256 matches.  No name
from the archive becomes a path: links, folders, other members and ``..`` tricks are ignored.
"""

from __future__ import annotations

import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO, Optional

from trainnet.data.download import by_hand, copy_hashed, download, install, make_folder, verified
from trainnet.data.progress import Log, Progress, quiet_log
from trainnet.errors import TrainnetError

DEFAULT_MIRROR = "https://www.cs.toronto.edu/~kriz/"
ARCHIVE = "cifar-10-binary.tar.gz"
MEMBER_DIR = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
CIFAR10_SHA256 = {
    "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
    "batches.meta.txt": "558e74b5e208382e186da55784b4bac2cd52e558448e1b5800990fdb28ed8033",
}


CIFAR10_BYTES = {**{name: 30730000 for name in CIFAR10_SHA256 if name.endswith(".bin")},
                 META_FILE: 61}
ARCHIVE_LIMIT = 256 << 20  # the archive is 162 MiB: more than this is not it


def archive_url(mirror: str) -> str:
    """The archive's URL: ``mirror`` itself when it names a .tar.gz, else the archive under it."""
    if mirror.endswith((".tar.gz", ".tgz")):
        return mirror
    return (mirror if mirror.endswith("/") else mirror + "/") + ARCHIVE


def _hint(dest: Path) -> str:
    return f"{by_hand(CIFAR10_SHA256, dest)} (they are the {MEMBER_DIR}/ files of {ARCHIVE})"


def download_cifar10(dest: Path, mirror: str = DEFAULT_MIRROR, timeout: float = 30,
                     log: Optional[Log] = None, progress: Optional[Progress] = None) -> Path:
    """The seven CIFAR-10 files in ``dest`` (e.g. ``$TRAINNET_DATA/cifar10``), verified.

    Files already there with the right checksum are kept; the archive is fetched only when one
    is missing or wrong, and only those are taken from it.  ``mirror`` is a base URL (or the
    archive's own URL; ``file://`` for a local copy).  Returns ``dest``.
    """
    dest, log = make_folder(dest), log or quiet_log
    missing = []
    for name, sha256 in CIFAR10_SHA256.items():
        if verified(dest / name, sha256):
            log(f"{dest / name}: present, checksum ok")
        else:
            missing.append(name)
    if not missing:
        return dest
    url, hint = archive_url(mirror), _hint(dest)
    log(f"{dest}: downloading {url} for {', '.join(missing)}")
    try:
        archive = tempfile.TemporaryFile(dir=dest)
    except OSError as exc:
        raise TrainnetError(f"{dest}: cannot write there ({exc.strerror or exc})") from None
    with archive:
        download(url, archive, timeout, hint, progress, ARCHIVE_LIMIT)
        if archive.tell() > ARCHIVE_LIMIT:
            raise TrainnetError(f"{url}: more than {ARCHIVE_LIMIT >> 20} MiB, so not CIFAR-10's "
                                f"archive (162 MiB); {hint}")
        archive.seek(0)
        _extract(archive, dest, missing, url, hint, log)
    return dest


def _extract(archive: BinaryIO, dest: Path, names: list[str], url: str, hint: str,
             log: Log) -> None:
    """Install ``names`` from the archive's regular-file members ``MEMBER_DIR/<name>``."""
    wanted = {f"{MEMBER_DIR}/{name}": name for name in names}
    done = set()
    try:
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or name in done or not member.isfile():
                    continue
                source = tar.extractfile(member)
                install(dest / name, CIFAR10_SHA256[name],
                        lambda out: copy_hashed(source, out, name, member.size,
                                                limit=CIFAR10_BYTES[name]),
                        f"{url}: {member.name}", hint)
                log(f"{dest / name}: extracted, checksum ok")
                done.add(name)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise TrainnetError(f"{url}: not a readable .tar.gz archive ({exc}); {hint}") from None
    lacking = [f"{MEMBER_DIR}/{name}" for name in names if name not in done]
    if lacking:
        raise TrainnetError(f"{url}: the archive holds no {', '.join(lacking)}; it is not "
                            f"CIFAR-10's binary version; {hint}")
