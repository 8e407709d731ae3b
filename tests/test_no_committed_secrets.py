"""No secret-looking literal outside the tests: a webhook secret (`whsec_` + base64) or an API key (`sk-` + a long
token) in product code, scripts, benches or docs would be copied, logged and scanned as a leak. Tests may hold
made-up ones (and the vendor's published example secret)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{16,}|\bsk-[A-Za-z0-9_-]{16,}")
PLACES = ("backdrop", "flows", "tasks", "deployments", "scripts", "bench", "docs")


def _files() -> list[Path]:
    files = [p for place in PLACES for p in (ROOT / place).rglob("*") if p.is_file()
             and p.suffix in (".py", ".md", ".yaml", ".yml", ".toml", ".json", ".csv", ".txt", ".html")]
    return [*files, *(ROOT / name for name in ("README.md", "prefect.yaml", "automations.yaml", "pyproject.toml"))]


def test_no_secret_looking_literal_outside_the_tests() -> None:
    found = [f"{p.relative_to(ROOT)}: {m.group(0)[:12]}..." for p in _files()
             for m in SECRET.finditer(p.read_text(errors="replace"))]
    assert not found, found


def test_the_pattern_finds_what_it_should() -> None:
    assert SECRET.search("secret = 'whsec_NDQzMzYxNzkzMzE0NjYyNDM6'")
    assert SECRET.search("key=sk-live0123456789abcdef")
    assert not SECRET.search("a `whsec_<base64>` secret, BACKDROP_API_KEY=sk-...")
