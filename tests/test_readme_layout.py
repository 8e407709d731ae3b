"""The README's Layout section is the real tree: `scripts/layout.py` prints it from the packages, and it must match."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout_script():  # noqa: ANN202 - a module loaded from a path
    spec = importlib.util.spec_from_file_location("layout", ROOT / "scripts" / "layout.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_layout_is_the_tree() -> None:
    layout = _layout_script()
    assert layout.readme_block((ROOT / "README.md").read_text()) == layout.layout(), (
        "README.md's Layout differs from the tree: run `python scripts/layout.py --write`"
    )

