"""Fixtures for the gallery tests: one small batch on disk (see helpers.py for its rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gallery.helpers import Batch, make_batch


@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    return make_batch(tmp_path)
