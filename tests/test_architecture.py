"""Layering, enforced: the pipeline reaches the sandbox only over HTTP, and the client knows no Prefect."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = [*sorted((ROOT / "backdrop" / "client").glob("*.py")), *sorted((ROOT / "tasks").glob("*.py")),
            *sorted((ROOT / "flows").glob("*.py")),
            *[ROOT / "backdrop" / f"{m}.py" for m in ("steps", "batch", "ledger", "inputs", "preflight",
                                                      "report", "outputs", "settings", "errors", "polling",
                                                      "reconcile", "webhooks", "summary_md", "gallery",
                                                      "gallery_cards", "gallery_html", "gallery_sheet",
                                                      "cost")]]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PIPELINE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pipeline_never_imports_the_sandbox(path: Path) -> None:
    assert not [m for m in _imports(path) if m.startswith("backdrop.sandbox")]


@pytest.mark.parametrize("path", sorted((ROOT / "backdrop" / "client").glob("*.py")),
                         ids=lambda p: p.name)
def test_client_has_no_prefect_imports(path: Path) -> None:
    assert not [m for m in _imports(path) if m.split(".")[0] == "prefect"]


def test_layers_point_one_way() -> None:
    """tasks never import flows; the library never imports tasks or flows (the CLI is the one front end)."""
    for path in (ROOT / "tasks").glob("*.py"):
        assert not [m for m in _imports(path) if m.startswith("flows")], path
    for path in (ROOT / "backdrop").rglob("*.py"):
        if path.parent.name == "cli":  # the one front end: it runs the flows
            continue
        bad = [m for m in _imports(path) if m.split(".")[0] in ("tasks", "flows")]
        assert not bad, (path, bad)
