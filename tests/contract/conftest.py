"""Fixtures for the contract tests: a plain httpx client on the test's sandbox key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import TLS

if TYPE_CHECKING:
    from tests.conftest import SandboxHandle


@pytest.fixture
def api(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    sandbox.configure(rate_limit_enabled=False)
    with httpx.Client(base_url=sandbox.base_url, trust_env=False, timeout=10.0, verify=TLS,
                      headers={"Authorization": f"Bearer {sandbox.api_key}"}) as client:
        yield client
