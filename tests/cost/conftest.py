"""Fixtures for the cost tests: a SQLite ledger to fill directly (see tests/cost/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backdrop.store.ledger import Ledger
from tests.cost.helpers import LedgerFiller


@pytest.fixture
def filler(tmp_path: Path) -> LedgerFiller:
    return LedgerFiller(Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"))
