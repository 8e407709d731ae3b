"""No `.replace(tzinfo=...)` in the pipeline: it relabels a time instead of converting it.

PostgreSQL hands `timestamptz` back in the session's TimeZone (PGTZ, or the server's `timezone`): relabelling
12:36+09:00 as UTC puts it 9 hours late, which once made reconciliation miss a charge and pay again (security
review, finding 2). Times read from the ledger are already aware UTC (`backdrop.store.ledger.as_utc`); convert any
other aware time with `astimezone(UTC)`, and attach UTC to a naive one with `as_utc`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("backdrop", "flows", "tasks") for p in (ROOT / d).rglob("*.py"))
_TEXT = re.compile(r"\.\s*replace\s*\([^)]*\btzinfo\s*=")


def _relabels(source: str) -> list[int]:
    """Lines holding a `.replace(..., tzinfo=...)` call, found both in the syntax tree and in the text."""
    lines = {node.lineno for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "replace"
             and any(k.arg == "tzinfo" for k in node.keywords)}
    lines.update(source.count("\n", 0, m.start()) + 1 for m in _TEXT.finditer(source))
    return sorted(lines)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_time_is_relabelled(path: Path) -> None:
    found = _relabels(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: .replace(tzinfo=...) at lines {found}: use astimezone(UTC) or as_utc"


def test_the_check_finds_a_relabel() -> None:
    assert _relabels("t = row.created_at.replace(tzinfo=UTC)\n") == [1]
    assert _relabels("t = (\n    x.replace(microsecond=0,\n              tzinfo=UTC))\n") == [2]
    assert _relabels("t = x.astimezone(UTC)\ns = 'a'.replace('b', 'c')\n") == []
