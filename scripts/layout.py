"""Print the README's Layout section from the real tree: each package's one-line purpose and its modules.

    python scripts/layout.py            # print the block
    python scripts/layout.py --write    # replace the block in README.md

`tests/test_readme_layout.py` fails when README.md and this output differ, so the layout can never drift from the
code: a new module appears in the README the day it is added, described by its package's docstring.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backdrop", "tasks", "flows", "deployments")
START, END = "<!-- layout:start (scripts/layout.py) -->", "<!-- layout:end -->"
WIDTH, INDENT = 118, 22


def _purpose(init: Path) -> str:
    """The first sentence of a package's docstring."""
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".")


def _entry(name: str, text: str) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - INDENT) or [""]
    return [f"{name:<{INDENT}}{lines[0]}".rstrip(), *(" " * INDENT + line for line in lines[1:])]


def _package(path: Path, label: str) -> list[str]:
    modules = sorted(p.stem for p in path.glob("*.py") if p.name != "__init__.py")
    subpackages = sorted(p for p in path.iterdir() if (p / "__init__.py").exists())
    out = _entry(label, _purpose(path / "__init__.py"))
    if modules:
        out += _entry(" " * (len(label) - len(label.lstrip()) + 2) + "modules:", ", ".join(modules))
    for sub in subpackages:
        if sub.name == "__pycache__":
            continue
        out += _package(sub, " " * (len(label) - len(label.lstrip()) + 2) + f"{sub.name}/")
    return out


def layout() -> str:
    lines: list[str] = []
    for name in PACKAGES:
        lines += _package(ROOT / name, f"{name}/")
    lines += _entry("prefect.yaml", "the deployments, their schedules and the work pool")
    lines += _entry("tests/", "one folder per unit (client/, pacing and store under services/, pipeline/, ...), "
                              "support/ for shared helpers")
    lines += _entry("bench/", "throughput, chaos, limiter and decompression-bomb benchmarks (figures, never asserts)")
    lines += _entry("vendor/openapi/", "the vendor's published OpenAPI bundles (source noted there)")
    return "\n".join(["```", *lines, "```"])


def readme_block(readme: str) -> str:
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[start:end].strip("\n")


def main() -> None:
    block = layout()
    if "--write" in sys.argv:
        readme = (ROOT / "README.md").read_text()
        start, end = readme.index(START) + len(START), readme.index(END)
        (ROOT / "README.md").write_text(readme[:start] + "\n" + block + "\n" + readme[end:])
    else:
        print(block)


if __name__ == "__main__":
    main()
