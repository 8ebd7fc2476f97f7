"""How the emulated backend builds a ``.cu`` source, and how it explains a kernel's error.

The source is preprocessed (line markers kept), each ``extern "C" __global__`` kernel becomes a
static body plus an exported wrapper that runs the body on every thread of every block
(``emu::launch`` in ``cuda_host.h``), and the result is compiled with debug information, so that
an error's addresses become ``file:line`` and its shared offsets ``variable[index]``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from trainnet.kernels import sources as K

KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{')
WRAPPERS = ("emulator-wrappers", "cuda_host.h", "??")  # frames of ours, not the kernel's


class EmulationError(RuntimeError):
    """A kernel did on the emulated GPU what would be undefined on a real one."""


def _param_names(params: str) -> list[str]:
    names = []
    for param in params.split(","):
        param = re.sub(r"\[[^\]]*\]", "", param).strip()
        if param and param != "void":
            names.append(re.findall(r"\w+", param)[-1])
    return names


def host_source(preprocessed: str) -> str:
    """The preprocessed ``.cu`` text with each ``extern "C" __global__`` kernel renamed to a
    static body and an exported wrapper of the same name that runs the body on every thread of
    every block (line numbers kept, for the debug information)."""
    wrappers = []

    def rename(m):
        name, params = m.group(1), m.group(2)
        args = ", ".join(_param_names(params))
        flat = " ".join(params.split())
        wrappers.append(f'extern "C" __attribute__((visibility("default"))) void {name}({flat}) '
                        f'{{ emu::launch([&] {{ {name}__emu_body({args}); }}); }}')
        head = m.group(0)
        return f"static void {name}__emu_body" + head[head.index("("):]
    text = KERNEL.sub(rename, preprocessed)
    if "__global__" in re.sub(r"#.*", "", text):
        raise ValueError("a __global__ function the emulator cannot wrap (not extern \"C\" void)")
    return text + '\n# 1 "emulator-wrappers"\n' + "\n".join(wrappers) + "\n"


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def build(cxx: str, source: Path, so: Path, header: Path) -> None:
    """Compile ``source`` for the emulator into ``so`` with ``header`` (cuda_host.h), with the
    shared-memory checker's instrumentation where it declares __shared__ memory."""
    text = host_source(_run([cxx, "-E", "-x", "c++", "-std=c++17", f"-I{K.INCLUDE_DIR}",
                             str(source)]))
    cpp, obj = so.with_suffix(f".{os.getpid()}.cpp"), so.with_suffix(f".{os.getpid()}.o")
    tmp = so.with_suffix(f".{os.getpid()}.tmp")
    cpp.write_text(text)
    checked = ["-fsanitize=thread", "--param", "tsan-instrument-func-entry-exit=0"]
    try:
        _run([cxx, "-O2", "-g", "-fPIC", "-std=c++17", "-fvisibility=hidden",
              *(checked if "__shared__" in text else []), "-include", str(header),
              "-c", str(cpp), "-o", str(obj)])
        _run([cxx, "-shared", str(obj), "-o", str(tmp)])
        tmp.replace(so)
    finally:
        for path in (cpp, obj, tmp):
            path.unlink(missing_ok=True)


def _lines(so: Path, pcs: list[int]) -> dict[int, str]:
    """file:line (innermost first, then where it was inlined) of each return address."""
    found = {}
    tool = shutil.which("addr2line")
    for pc in pcs if tool else ():
        out = subprocess.run([tool, "-i", "-e", str(so), hex(pc - 1)], capture_output=True,
                             text=True).stdout.split()
        frames = [f"{Path(w.split(':')[0]).name}:{w.split(':')[-1].split()[0]}" for w in out]
        found[pc] = " in ".join(f for f in frames if not f.startswith(WRAPPERS))
    return found


def _shared_names(so: Path, base: int, offsets: list[int]) -> dict[int, str]:
    """The __shared__ variable and byte offset of each offset into the shared section."""
    tool = shutil.which("nm")
    if not tool or base < 0:
        return {}
    symbols = []
    for line in subprocess.run([tool, "-C", "-S", "--defined-only", str(so)],
                               capture_output=True, text=True).stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and all(c in "0123456789abcdef" for c in parts[0] + parts[1]):
            symbols.append((int(parts[0], 16), int(parts[1], 16), parts[3].split("::")[-1]))
    found = {}
    for off in offsets:
        for start, size, name in symbols:
            if start <= base + off < start + size:
                found[off] = f"{name}[{(base + off - start) // 4}]"
    return found


def explain(so: Path, shared_base: int, kernel: str, blocks: int, threads: int,
            message: str) -> str:
    """The C side's message with addresses as source lines and offsets as variable names."""
    pcs = [int(p) for p in re.findall(r"pc@(-?\d+)", message) if int(p) >= 0]
    lines = _lines(so, pcs)
    message = re.sub(r" ?\(pc@(-?\d+)\)", lambda m: f" (at {lines[int(m.group(1))]})"
                     if int(m.group(1)) in lines else "", message)
    offsets = [int(o) for o in re.findall(r"shared offset (\d+)", message)]
    names = _shared_names(so, shared_base, offsets)
    message = re.sub(r"shared offset (\d+)", lambda m: names.get(int(m.group(1)), m.group(0)),
                     message)
    return f"kernel {kernel} ({blocks} blocks of {threads} threads, emulated): {message}"
