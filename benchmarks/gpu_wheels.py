"""The wheels benchmarks/gpu_prepare.sh brings along for benchmarks/gpu_check.sh.

    python benchmarks/gpu_wheels.py requirements   # what .whl/ must hold, pinned to this machine's
    python benchmarks/gpu_wheels.py prune DIR      # drop from DIR the wheels the device has
    python benchmarks/gpu_wheels.py wheels DIR     # check DIR: one version of each, for the device

The GPU machine has CUDA, CuPy, NumPy, PyTorch, click, PyYAML and pytest (DEVICE_HAS), and may
lack every other dependency of the project (pyproject's, and the test extras').  Those are
pinned to the versions installed here, which the test suite passed with.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICE_HAS = {"numpy", "pyyaml", "click", "pytest", "torch"}
EXTRAS = ("leveldb", "progress", "dev")  # the test suite's extras (trainnet[...] refers are skipped)
DEVICE_PYTHON = "cp312"


def name_of(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """``name==version`` for each dependency the GPU machine may lack, sorted; a dependency not
    installed here raises LookupError (pip could not pin it)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    names = {name_of(r) for r in wanted} - DEVICE_HAS - {project["name"]}
    missing = []
    pinned = []
    for name in sorted(names):
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise LookupError(f"not installed here, so not pinned: {', '.join(missing)}")
    return pinned


def check_wheels(folder: Path) -> list[str]:
    """What is wrong with the wheels in ``folder`` for the device: two versions of one
    distribution, or a wheel for another Python or platform.  Empty when all is well."""
    problems, seen = [], {}
    for wheel in sorted(folder.glob("*.whl")):
        name, version, *_, python, abi, platform = wheel.stem.split("-")
        key = name.lower().replace("_", "-")
        if key in seen and seen[key] != version:
            problems.append(f"{key}: two versions ({seen[key]}, {version}): keep one")
        seen[key] = version
        if not (abi == "abi3" or any(t in ("py3", DEVICE_PYTHON) for t in python.split("."))):
            problems.append(f"{wheel.name}: for {python}, not {DEVICE_PYTHON}")
        if platform != "any" and "x86_64" not in platform:
            problems.append(f"{wheel.name}: for {platform}, not x86-64 Linux")
    return problems


def prune(folder: Path) -> list[str]:
    """Remove the wheels of DEVICE_HAS from ``folder`` (pip's resolver fetched them as needs of
    others: h5py's NumPy); returns their names.  The device's own stay in use."""
    gone = []
    for wheel in sorted(folder.glob("*.whl")):
        if wheel.name.split("-")[0].lower().replace("_", "-") in DEVICE_HAS:
            wheel.unlink()
            gone.append(wheel.name)
    return gone


def main(argv: list[str]) -> int:
    if argv[:1] == ["requirements"]:
        print("\n".join(requirements()))
        return 0
    if argv[:1] == ["prune"] and len(argv) == 2:
        for name in prune(Path(argv[1])):
            print(f"dropped {name}: the device has it")
        return 0
    if argv[:1] == ["wheels"] and len(argv) == 2:
        problems = check_wheels(Path(argv[1]))
        print("\n".join(problems) or f"{argv[1]}: wheels fit the device")
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
