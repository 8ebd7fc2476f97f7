"""The kernel ABI: every ``extern "C" __global__`` prototype parses, a launch is checked against
it (count, pointer element type, scalar width), and every kernel name trainnet launches exists in
the source it launches from."""

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

from trainnet.kernels import sources as K

SOURCES = K.all_sources()
PACKAGE = Path(K.__file__).resolve().parents[1]
BASIC = PACKAGE / "runtime" / "basic.cu"
IS_ARRAY = (lambda a: isinstance(a, np.ndarray))  # noqa: E731


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_every_prototype_parses(source):
    text = K.read_source(source)
    protos = K.prototypes(source)
    assert len(protos) == text.count("__global__")
    for name, params in protos.items():
        assert all(p.name.isidentifier() for p in params), name


def test_prototypes_expand_parameter_macros_and_skip_comments(tmp_path):
    src = tmp_path / "k.cu"
    src.write_text('#define GEOM int H, \\\n    int W  // the plane\n'
                   '// extern "C" __global__ void commented(float* x) {}\n'
                   'extern "C" __global__ void k(float* __restrict__ y, const i64* idx, /* n */\n'
                   '                             GEOM, u32 seed, const u64* key, i64 n) {}\n'
                   'extern "C" __global__ void none() {}\n')
    protos = K.prototypes(src)
    assert list(protos) == ["k", "none"]
    assert [(p.name, p.ctype) for p in protos["k"]] == [
        ("y", "float*"), ("idx", "i64*"), ("H", "int"), ("W", "int"), ("seed", "u32"),
        ("key", "u64*"), ("n", "i64")]
    assert protos["none"] == ()


def test_a_well_typed_launch_passes():
    y, x = np.zeros(4, np.float32), np.ones(4, np.float32)
    K.check_launch(BASIC, "axpy_f32", 256, (y, x, np.float32(2), np.int64(4)), IS_ARRAY)
    K.check_launch(K.INCLUDE_DIR.parent / "layers" / "dropout.cu", "tick_u64", 256,
                   (np.zeros(1, np.uint64),), IS_ARRAY)


@pytest.mark.parametrize("args, message", [
    ((np.float32(1), np.int64(4)), r"2 arguments given, the prototype takes 4 \(float\* y, "),
    ((np.zeros(4, np.float32), np.zeros(4, np.float32), np.float32(2), np.int32(4)),
     r"argument 3 'n' is i64 in the prototype \(np.int64\); got np.int32"),
    ((np.zeros(4, np.float32), np.zeros(4, np.float64), np.float32(2), np.int64(4)),
     r"argument 1 'x' is float\* in the prototype \(an array of float32\); got float64 array"),
    ((np.zeros(4, np.float32), np.zeros(4, np.float32), np.int64(4), np.float32(2)),
     r"argument 2 'alpha' is float in the prototype \(np.float32\); got np.int64"),
    ((np.zeros(4, np.float32), np.float32(2), np.zeros(4, np.float32), np.int64(4)),
     r"argument 1 'x' is float\* .*; got np.float32"),
])
def test_a_mistyped_launch_names_the_kernel_and_the_argument(args, message):
    with pytest.raises(TypeError, match=r"kernel axpy_f32 \(basic.cu\): " + message):
        K.check_abi(BASIC, "axpy_f32", args, IS_ARRAY)


def test_an_unknown_kernel_and_a_python_scalar_are_refused():
    with pytest.raises(TypeError, match=r"kernel axpy \(basic.cu\): no extern .* \(it has .*axpy_f32"):
        K.check_abi(BASIC, "axpy", (), IS_ARRAY)
    with pytest.raises(TypeError, match="argument 2 is float"):
        K.check_launch(BASIC, "axpy_f32", 256, (np.zeros(1, np.float32),) * 2 + (2.0, np.int64(1)),
                       IS_ARRAY)


@pytest.mark.parametrize("threads", [0, 96, 255, 2048])
def test_block_reductions_need_a_power_of_two_block(threads):
    with pytest.raises(ValueError, match=f"kernel fill_f32: {threads} threads per block"):
        K.check_launch(BASIC, "fill_f32", threads, (np.zeros(1, np.float32), np.float32(0),
                                                    np.int64(1)), IS_ARRAY)


def test_the_prototype_check_runs_once_per_argument_typing():
    checked = set()
    args = (np.zeros(2, np.float32), np.float32(0), np.int64(2))
    K.check_launch(BASIC, "fill_f32", 256, args, IS_ARRAY, checked)
    assert len(checked) == 1
    K.check_launch(BASIC, "fill_f32", 256, args, IS_ARRAY, checked)
    assert len(checked) == 1
    with pytest.raises(TypeError, match="argument 2 'n'"):
        K.check_launch(BASIC, "fill_f32", 256, args[:2] + (np.int32(2),), IS_ARRAY, checked)


# --- every launched kernel name exists in its source -------------------------------------------

def _launches():
    """(module, call node, its enclosing function) for every ``.launch(src, name, ...)`` and
    ``.launch_blocks(src, name, ...)`` in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("launch", "launch_blocks") and len(node.args) >= 2):
                func = node
                while func is not None and not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    func = parents.get(func)
                yield path, tree, node, func


def _module(path):
    return importlib.import_module(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))


def _class_strings(attr):
    """Every ``attr = "..."`` class attribute in the package (a rule's ``kernel``)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                            and stmt.value.value != ""  # an abstract base names none
                            and any(isinstance(t, ast.Name) and t.id == attr for t in stmt.targets)):
                        yield f"{path.name}:{stmt.lineno}", stmt.value.value


def _parameter_strings(tree, func, param):
    """The string literals passed for ``param`` of ``func`` by the calls to it in ``tree``."""
    names = [a.arg for a in func.args.args]
    index = names.index(param) - (1 if names and names[0] == "self" else 0)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                == func.name and len(node.args) > index):
            arg = node.args[index]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield f"line {node.lineno}", arg.value


def _kernel_names():
    """(where, source, kernel name) for every launch; a name that is not a literal is followed
    to the class attribute or the function parameter it comes from."""
    unresolved = []
    for path, tree, call, func in _launches():
        if path.name == "cuda.py" and path.parent.name == "runtime" and func.name == "launch":
            continue  # the backend's own grid-stride launch passes its arguments on
        src_node, name_node = call.args[0], call.args[1]
        where = f"{path.relative_to(PACKAGE.parent)}:{call.lineno}"
        if not isinstance(src_node, ast.Name):
            unresolved.append(where)
            continue
        source = getattr(_module(path), src_node.id)
        if isinstance(name_node, ast.Constant):
            yield where, source, name_node.value
        elif isinstance(name_node, ast.Attribute) and isinstance(name_node.value, ast.Name):
            found = list(_class_strings(name_node.attr))
            unresolved += [where] if not found else []
            yield from ((f"{where} ({w})", source, v) for w, v in found)
        elif isinstance(name_node, ast.Name) and func is not None and name_node.id in [
                a.arg for a in func.args.args]:
            found = list(_parameter_strings(tree, func, name_node.id))
            unresolved += [where] if not found else []
            yield from ((f"{where} ({w})", source, v) for w, v in found)
        else:
            unresolved.append(where)
    assert not unresolved, f"kernel names this test cannot follow: {unresolved}"


def test_every_launched_kernel_exists_in_its_source():
    launched = list(_kernel_names())
    assert len(launched) > 80
    missing = [f"{where}: {name} not in {Path(source).name}" for where, source, name in launched
               if name not in K.prototypes(Path(source))]
    assert missing == []
