"""Fixtures for the pipeline tests (the environment is cleaned by tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
