"""Fixtures for the sandbox's own tests: a plain httpx client on the test's key, uploads, a loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.images import picture
from tests.support.loopback import LoopbackHTTP
from tests.support.sandbox import SandboxHandle, key_client
from tests.support.vendor_api import Upload, put_bytes, request_slot


@pytest.fixture
def api(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """The vendor API as a client sees it, rate limiting off (the rate-limit tests turn it on)."""
    with key_client(sandbox) as client:
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
