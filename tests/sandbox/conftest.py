"""Fixtures for the sandbox's own tests: a plain httpx client on the test's key, and uploads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import TLS
from tests.sandbox.helpers import LoopbackHTTP, picture, put_bytes, request_slot

if TYPE_CHECKING:
    from tests.conftest import SandboxHandle

Upload = Callable[..., str]


@pytest.fixture
def api(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """The vendor API as a client sees it, rate limiting off (the rate-limit tests turn it on)."""
    sandbox.configure(rate_limit_enabled=False)
    with httpx.Client(base_url=sandbox.base_url, trust_env=False, timeout=10.0, verify=TLS,
                      headers={"Authorization": f"Bearer {sandbox.api_key}"}) as client:
        yield client


@pytest.fixture
def upload(api: httpx.Client) -> Upload:
    """upload(data=None, name="photo.jpg", content_type="image/jpeg") -> file_id with bytes PUT."""

    def _upload(data: bytes | None = None, name: str = "photo.jpg",
                content_type: str = "image/jpeg") -> str:
        data = picture() if data is None else data
        slot = request_slot(api, data, name, content_type)
        assert put_bytes(slot, data).status_code == 200
        file_id: str = slot["file_id"]
        return file_id

    return _upload


@pytest.fixture
def loopback() -> Iterator[LoopbackHTTP]:
    """A loopback HTTP server: pictures for `src_file_url`, a receiver for webhooks."""
    server = LoopbackHTTP()
    try:
        yield server
    finally:
        server.close()
