"""Caffe's image list files: one ``path label`` per line, as convert_imageset and the ImageData
layer read them (the path is everything before the line's last space, so it may hold spaces).
Trailing whitespace and blank lines are ignored; any other line that is not ``path label`` with
an integer label is an error naming the file and line (where Caffe would read a wrong label)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainnet.errors import TrainnetError
from trainnet.formats.limits import read_text


@dataclass(frozen=True)
class ListEntry:
    path: str
    label: int
    line: int  # 1-based line of the list file


def read_list(list_file: Path) -> list[ListEntry]:
    """The entries of a ``path label`` list; a line that is not one is an error naming it."""
    list_file = Path(list_file)
    text = read_text(list_file, "list file")
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if not line:
            continue
        path, space, label = line.rpartition(" ")
        if not space or not path.strip():
            raise TrainnetError(f"{list_file}:{number}: expected 'path label', got {line!r}")
        try:
            entries.append(ListEntry(path, int(label), number))
        except ValueError:
            raise TrainnetError(f"{list_file}:{number}: the label {label!r} (after the last space) "
                                "is not an integer") from None
    if not entries:
        raise TrainnetError(f"{list_file}: lists no images (one 'path label' per line)")
    return entries
