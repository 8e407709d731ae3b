"""Fixtures for the contract tests: a plain httpx client on the test's sandbox key."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.sandbox import SandboxHandle, key_client


@pytest.fixture
def api(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """The vendor API as a client sees it, rate limiting off."""
    with key_client(sandbox) as client:
        yield client
