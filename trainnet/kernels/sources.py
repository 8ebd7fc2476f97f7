"""What every GPU backend shares: where kernel sources are, and how launches are typed.

Kernel sources are ``.cu`` files beside the module that uses them (``layers/relu.cu`` beside
``layers/relu.py``), each including ``common.cuh`` from this package (``INCLUDE_DIR``); a
header of one package's kernels (``layers/loss.cuh``) stays beside them and is found first.
This package sits below the layers and the runtime, which both launch kernels, so neither
reaches the other for them.  A launch passes arrays (device
pointers) and NumPy scalars whose type states the C parameter's type; a Python int or float
is refused, because its C width would be a guess.

The kernel ABI is checked: each ``extern "C" __global__`` prototype of a source is parsed once
(``prototypes``), and ``check_launch`` compares a launch's arguments with it (count, pointer
element type, scalar width), so that a swapped or mistyped argument is an error naming the
kernel and the argument, not undefined behaviour on a GPU.  Both backends call it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

INCLUDE_DIR = Path(__file__).resolve().parent  # common.cuh
BLOCK = 256  # threads per block of grid-stride kernels
MAX_PARTIALS = 256  # blocks of the first stage of a two-stage reduction, over all its segments
SCALARS = (np.int32, np.uint32, np.int64, np.uint64, np.float32)


def kernel_source(module_file: str, name: str | None = None) -> Path:
    """The ``.cu`` file beside ``module_file`` (``__file__`` of the caller), or ``name`` there."""
    here = Path(module_file).resolve()
    return here.parent / name if name else here.with_suffix(".cu")


def read_source(path: Path, _seen: set | None = None) -> str:
    """The text of a ``.cu`` file with its ``#include "..."`` lines replaced by the headers
    (from the including file's folder, else ``INCLUDE_DIR``, as a C preprocessor looks; each
    once), so that a compile cache keyed on the text sees header edits too."""
    seen = set() if _seen is None else _seen
    lines = []
    for line in Path(path).read_text().splitlines():
        if line.startswith('#include "'):
            name = line.split('"')[1]
            header = Path(path).parent / name
            header = header if header.exists() else INCLUDE_DIR / name
            if header not in seen:
                seen.add(header)
                lines.append(read_source(header, seen))
        elif line.strip() != "#pragma once":
            lines.append(line)
    return "\n".join(lines) + "\n"


def all_sources() -> list[Path]:
    """Every CUDA source of the package (for the compile test)."""
    return sorted(INCLUDE_DIR.parent.rglob("*.cu"))


# C types of kernel parameters (after common.cuh's typedefs) and the NumPy type that matches them
C_TYPES = {"float": np.float32, "double": np.float64, "int": np.int32, "unsigned int": np.uint32,
           "unsigned": np.uint32, "u32": np.uint32, "long long": np.int64, "i64": np.int64,
           "unsigned long long": np.uint64, "u64": np.uint64, "unsigned char": np.uint8,
           "char": np.int8, "bool": np.bool_}
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
                     r'(\w+)\s*\(([^)]*)\)')
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(?![\w(])[ \t]*(.*)$", re.M)


class Param(NamedTuple):
    name: str
    ctype: str       # as written, without const and __restrict__: "float*", "i64"
    dtype: type      # the NumPy type: the array's element type for a pointer
    pointer: bool


def parse_param(text: str) -> Param:
    words = text.replace("*", " * ").split()
    words = [w for w in words if w not in ("const", "__restrict__", "volatile")]
    pointer = "*" in words
    if words.count("*") > 1 or len(words) < 2 or words[-1] == "*":
        raise ValueError(f"kernel parameter '{text.strip()}': not a scalar or a pointer")
    base = " ".join(w for w in words[:-1] if w != "*")
    if base not in C_TYPES:
        raise ValueError(f"kernel parameter '{text.strip()}': unknown C type '{base}'")
    return Param(words[-1], base + ("*" if pointer else ""), C_TYPES[base], pointer)


@lru_cache(maxsize=None)
def prototypes(source: Path) -> dict[str, tuple[Param, ...]]:
    """``{kernel name: its parameters}`` for every ``extern "C" __global__`` kernel of
    ``source`` (its headers inlined), parsed once per process."""
    text = _COMMENT.sub(" ", read_source(source)).replace("\\\n", " ")
    macros = dict(_DEFINE.findall(text))  # object-like macros (a shared parameter list)
    found = {}
    for name, params in _KERNEL.findall(text):
        for _ in range(8):
            expanded = re.sub(r"\b\w+\b", lambda m: macros.get(m.group(0), m.group(0)), params)
            if expanded == params:
                break
            params = expanded
        params = params.strip()
        found[name] = tuple(parse_param(p) for p in params.split(",")) if params and params != "void" else ()
    return found


def _kind(a, is_array) -> str:
    if is_array(a):
        return f"{np.dtype(a.dtype).name} array"
    return f"np.{type(a).__name__}" if isinstance(a, np.generic) else type(a).__name__


def check_abi(source: Path, name: str, args: tuple, is_array: Callable) -> None:
    """``args`` against the prototype of kernel ``name`` in ``source``: their count, and each
    one's C type (an array of the pointer's element type, a NumPy scalar of the scalar's)."""
    protos = prototypes(Path(source))
    where = f"kernel {name} ({Path(source).name})"
    params = protos.get(name)
    if params is None:
        raise TypeError(f"{where}: no extern \"C\" __global__ kernel of that name in the source "
                        f"(it has {', '.join(sorted(protos)) or 'none'})")
    if len(args) != len(params):
        raise TypeError(f"{where}: {len(args)} arguments given, the prototype takes {len(params)} "
                        f"({', '.join(p.ctype + ' ' + p.name for p in params)})")
    for i, (a, p) in enumerate(zip(args, params)):
        if p.pointer:
            ok = is_array(a) and np.dtype(a.dtype) == np.dtype(p.dtype)
        else:
            ok = not is_array(a) and type(a) is p.dtype
        if not ok:
            want = f"an array of {np.dtype(p.dtype).name}" if p.pointer else f"np.{p.dtype.__name__}"
            raise TypeError(f"{where}: argument {i} '{p.name}' is {p.ctype} in the prototype "
                            f"({want}); got {_kind(a, is_array)}")


def check_block(name: str, threads: int) -> None:
    """A block size a kernel may rely on: block_sum needs a power of two, at most 1024."""
    t = int(threads)
    if t < 1 or t > 1024 or t & (t - 1):
        raise ValueError(f"kernel {name}: {t} threads per block; block reductions (block_sum) "
                         "need a power of two from 1 to 1024")


def check_launch(source: Path, name: str, threads: int, args: tuple, is_array: Callable,
                 checked: set | None = None) -> None:
    """Every check of a launch: the block size, each argument's kind, and the ABI against the
    prototype.  ``checked`` (the backend's set) skips the prototype check for an argument typing
    of this kernel already checked, so a launch repeated every iteration costs little."""
    check_block(name, threads)
    check_args(name, args, is_array)
    if checked is not None:
        key = (source, name, tuple(a.dtype if is_array(a) else type(a) for a in args))
        if key in checked:
            return
        check_abi(source, name, args, is_array)
        checked.add(key)
    else:
        check_abi(source, name, args, is_array)


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


def partial_blocks(n: int, segments: int = 1) -> int:
    """Blocks per segment of the first stage of a two-stage reduction of ``segments`` sums over
    ``n`` items each: one per ``BLOCK`` items, at most ``MAX_PARTIALS`` in all (but at least one
    per segment).  It depends on the shapes only, never on the device, so the partials are
    added in the same order, to the same bits, on every run and every GPU."""
    per_segment = max(1, MAX_PARTIALS // max(1, int(segments)))
    return max(1, min((int(n) + BLOCK - 1) // BLOCK, per_segment))
