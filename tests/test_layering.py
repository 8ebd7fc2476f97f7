"""Packages import only packages below them in the data flow (STYLE habit 12).

The declared order, lowest first (a package may import its own modules and any level below):

    core     trainnet.errors, trainnet.registry: typed errors and registries
    formats  file formats and small shared helpers; nothing of trainnet but core
    kernels  the CUDA sources' shared header (common.cuh) and the helpers that find, read and
             type-check kernel sources: the layers and the runtime both launch kernels through it
    netcfg   the config schema, readers and writers
    data     dataset readers, transforms, prefetch: below layers, because the data layers
             (layers/data.py, image_data.py, hdf5_data.py ...) read through it, and above
             netcfg, because its transforms take netcfg's TransformationParameter
    layers   one module per layer type; a layer never sees the plan
    plan     the compiler passes over layers' declared contracts
    runtime  devices, arenas, kernels, the Net that runs a Plan
    solver   the training loop, update rules, lr policies, weights and snapshots
    zoo      model zoo, Caffe conversion, classify: applications over the solver and the Net
    tools    everyday tools over nets, plans and run logs (draw, plot)
    caffe    pycaffe's API (trainnet.caffe): a facade over the Net, the solver and the formats
    cli      the command line (and trainnet.launch / __main__, its entry points)
    api      the package root, trainnet/__init__.py: the public names (trainnet.Net ...); no
             module of trainnet imports it (they import trainnet.errors, core, directly)

DESIGN.md's table lists data/ after solver/, but the code fixes its place: the Data layers
import its readers, and nothing in it imports layers, plan, runtime or solver.

Every import is read with ``ast``, function-local ones included (a function-local import is for
a heavy optional dependency, never to hide a loop), and so is ``importlib.import_module`` of a
constant name.  ``ALLOWED`` names the backward imports that remain, each by importer file and
imported module with who must remove it; an entry that no longer occurs is an error too, so the
list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trainnet"

ORDER = ["core", "formats", "kernels", "netcfg", "data", "layers", "plan", "runtime", "solver",
         "zoo", "tools", "caffe", "cli", "api"]
LEVEL = {name: i for i, name in enumerate(ORDER)}
TOP_MODULES = {"errors": "core", "registry": "core", "launch": "cli", "__main__": "cli"}

# (importer, imported module) -> who must remove it.  Only shrink this list.
ALLOWED: dict[tuple[str, str], str] = {}


def package_of(module: str) -> str | None:
    """The level name of a trainnet module (None for anything outside trainnet)."""
    parts = module.split(".")
    if parts[0] != "trainnet":
        return None
    if len(parts) == 1:
        return "api"  # the package root: trainnet.Net, trainnet.Solver ... (loaded on first use)
    return TOP_MODULES.get(parts[1], parts[1])


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, function-local ones included; ``from a import
    b`` gives ``a.b`` when ``b`` is a module of trainnet, else ``a``."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*sub.split(".")).with_suffix(".py")).exists() or \
                    (PACKAGE.parent / Path(*sub.split(".")) / "__init__.py").exists()
                found.append((node.lineno, sub if is_module else module))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def backward_imports(root: Path = PACKAGE) -> dict[tuple[str, str], list[int]]:
    """(importer file, imported module) -> lines, for every import of a package above the
    importer's."""
    out: dict[tuple[str, str], list[int]] = {}
    for path in sorted(root.rglob("*.py")):
        mine = package_of(module_name(path))
        for line, module in imports(path):
            theirs = package_of(module)
            if theirs is None or theirs == mine:
                continue
            if theirs not in LEVEL:
                raise AssertionError(f"{path}:{line}: imports {module}, of a package the declared "
                                     f"order lacks ({theirs}): place it in ORDER")
            if LEVEL[theirs] > LEVEL[mine]:
                lines = out.setdefault((str(path.relative_to(PACKAGE.parent)), module), [])
                if line not in lines:  # one line may import several names of the module
                    lines.append(line)
    return out


def test_every_package_is_placed():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    unplaced = sorted((packages - set(LEVEL)) | (modules - set(TOP_MODULES)))
    assert not unplaced, f"place these in the declared order (ORDER / TOP_MODULES): {unplaced}"


def test_no_import_against_the_data_flow():
    found = backward_imports()
    new = [f"{file}:{','.join(map(str, lines))}: imports {module}, a package above its own"
           for (file, module), lines in sorted(found.items()) if (file, module) not in ALLOWED]
    assert not new, "imports against the package order:\n" + "\n".join(new)


def test_the_allow_list_only_shrinks():
    found = backward_imports()
    stale = [f"{file} -> {module}" for file, module in sorted(ALLOWED) if (file, module) not in found]
    assert not stale, ("these backward imports are gone: remove them from ALLOWED in "
                       "tests/test_layering.py:\n" + "\n".join(stale))


@pytest.mark.parametrize("low", ["formats", "kernels"])
def test_low_level_packages_import_nothing_of_trainnet_but_its_errors(low):
    for path in sorted((PACKAGE / low).glob("*.py")):
        for line, module in imports(path):
            assert package_of(module) in (None, "formats") or module == "trainnet.errors", \
                f"{path}:{line}: {module}"


def test_a_bad_import_is_caught(tmp_path):
    """The check itself: a netcfg module importing the solver is found, function-local or not."""
    pkg = tmp_path / "trainnet"
    (pkg / "netcfg").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "netcfg" / "__init__.py").write_text("")
    (pkg / "netcfg" / "bad.py").write_text(
        "from trainnet.formats import atomic\n"
        "def f():\n    from trainnet.solver.update import update_rule\n"
        "import importlib\nimportlib.import_module('trainnet.zoo.registry')\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, pkg
    try:
        found = backward_imports(pkg)
    finally:
        PACKAGE = saved
    assert found == {("trainnet/netcfg/bad.py", "trainnet.solver.update"): [3],
                     ("trainnet/netcfg/bad.py", "trainnet.zoo.registry"): [5]}
