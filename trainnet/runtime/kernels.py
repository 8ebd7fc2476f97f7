"""What every GPU backend shares: where kernel sources are, and how launches are typed.

Kernel sources are ``.cu`` files beside the module that uses them (``layers/relu.cu`` beside
``layers/relu.py``), each including ``layers/common.cuh``.  A launch passes arrays (device
pointers) and NumPy scalars whose type states the C parameter's type; a Python int or float
is refused, because its C width would be a guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INCLUDE_DIR = Path(__file__).resolve().parent.parent / "layers"
BLOCK = 256  # threads per block of grid-stride kernels
SCALARS = (np.int32, np.uint32, np.int64, np.uint64, np.float32)


def kernel_source(module_file: str, name: str | None = None) -> Path:
    """The ``.cu`` file beside ``module_file`` (``__file__`` of the caller), or ``name`` there."""
    here = Path(module_file).resolve()
    return here.parent / name if name else here.with_suffix(".cu")


def read_source(path: Path, _seen: set | None = None) -> str:
    """The text of a ``.cu`` file with its ``#include "..."`` lines replaced by the headers
    (from ``INCLUDE_DIR``, each once), so that a compile cache keyed on the text sees header
    edits too."""
    seen = set() if _seen is None else _seen
    lines = []
    for line in Path(path).read_text().splitlines():
        if line.startswith('#include "'):
            header = INCLUDE_DIR / line.split('"')[1]
            if header not in seen:
                seen.add(header)
                lines.append(read_source(header, seen))
        elif line.strip() != "#pragma once":
            lines.append(line)
    return "\n".join(lines) + "\n"


def all_sources() -> list[Path]:
    """Every CUDA source of the package (for the compile test)."""
    root = INCLUDE_DIR.parent
    return sorted(root.rglob("*.cu"))


def check_args(name: str, args: tuple, is_array) -> None:
    for i, a in enumerate(args):
        if not (is_array(a) or isinstance(a, SCALARS)):
            raise TypeError(f"kernel {name}: argument {i} is {type(a).__name__}; pass a device "
                            "array or a NumPy scalar (np.int32, np.int64, np.uint64, np.float32)")
        if is_array(a) and not a.flags.c_contiguous:
            raise ValueError(f"kernel {name}: argument {i} is not C-contiguous")


def grid_for(n: int, max_blocks: int) -> int:
    """Blocks for a grid-stride loop over ``n`` items."""
    return max(1, min((int(n) + BLOCK - 1) // BLOCK, max_blocks))
