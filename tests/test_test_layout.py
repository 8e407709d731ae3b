"""The tests' own layout, enforced: helpers are imported from modules, never from a conftest.

pytest loads conftest.py files itself (a conftest imported as a module can run twice, under two names);
fixtures stay in conftest files, helpers live in `tests/support/` or an area's `helpers.py`, and every
module of `tests/support/` says what it owns.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sorted(p for folder in ("tests", "bench", "scripts") for p in (ROOT / folder).rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("path", PYTHON, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_a_conftest(path: Path) -> None:
    conftests = [m for m in _imported_modules(path) if m == "conftest" or m.endswith(".conftest")
                 or ".conftest." in m]
    assert not conftests, f"{path.relative_to(ROOT)} imports {conftests}: move the helper to tests/support/"


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "support").glob("*.py")), ids=lambda p: p.name)
def test_every_support_module_says_what_it_owns(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} has no module docstring"
