"""The size budget: every module of trainnet/ at most 300 lines, every function at most 60
(from its first decorator to its last line, nested functions counted on their own too).

ALLOWED names today's exceptions with the size each has now: one of them may shrink but not
grow, and a name not in the list fails, so the list can only get shorter.  Remove an entry once
its file or function is within budget again (``test_the_allow_list_names_no_fixed_file``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trainnet"
MODULE_LINES = 300
FUNCTION_LINES = 60

# "path" for a module, "path:qualified.name" for a function -> its size in lines today.
ALLOWED: dict[str, int] = {
}


def sizes() -> dict[str, int]:
    """Every module's line count and every function's, keyed as ALLOWED is."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        found[rel] = len(text.splitlines())
        found.update(_functions(ast.parse(text), rel))
    return found


def _functions(tree: ast.AST, rel: str, prefix: str = "") -> dict[str, int]:
    found = {}
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                found[f"{rel}:{name}"] = node.end_lineno - start + 1
            found.update(_functions(node, rel, name + "."))
        else:
            found.update(_functions(node, rel, prefix))
    return found


def over_budget(found: dict[str, int]) -> dict[str, int]:
    return {key: n for key, n in found.items()
            if n > (FUNCTION_LINES if ":" in key else MODULE_LINES)}


def test_modules_and_functions_are_within_budget():
    found = over_budget(sizes())
    new = {key: n for key, n in found.items() if key not in ALLOWED}
    grown = {key: (n, ALLOWED[key]) for key, n in found.items() if key in ALLOWED and n > ALLOWED[key]}
    assert not new, ("over the size budget (modules <= 300 lines, functions <= 60): "
                     + ", ".join(f"{k} ({n} lines)" for k, n in new.items()) + "; split it")
    assert not grown, "an allowed exception grew: " + ", ".join(
        f"{k} ({n} lines, allowed {cap})" for k, (n, cap) in grown.items())


def test_the_allow_list_names_no_fixed_file():
    """An exception that is within budget again (or gone) leaves the list."""
    found = sizes()
    fixed = [key for key in ALLOWED if found.get(key, 0) <= (FUNCTION_LINES if ":" in key else MODULE_LINES)]
    assert not fixed, "within budget now, remove from ALLOWED: " + ", ".join(fixed)


def test_the_budget_sees_a_long_function_and_a_nested_one():
    source = "def outer():\n" + "    x = 1\n" * 70 + "    def inner():\n" + "        y = 2\n" * 61
    got = _functions(ast.parse(source), "m.py")
    assert got == {"m.py:outer": 133, "m.py:outer.inner": 62}
    assert over_budget(got) == got
