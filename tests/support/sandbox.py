"""The loopback sandbox as tests use it: one TLS context, a key of one's own, and helpers on that key.

`tests/conftest.py` starts one sandbox server per session and gives each test a fresh key through
`open_key`; `key_client` is the plain httpx client on that key the sandbox and contract tests drive the
vendor API with; `spend` makes charged tasks on a key as another program would.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from backdrop.sandbox import SandboxServer
from tests.support.images import save_picture

__all__ = ["TLS", "SandboxHandle", "key_client", "open_key", "spend"]

# One TLS context for every test client: building one per httpx.Client costs ~50 ms, and the
# sandbox is plain HTTP on loopback anyway.
TLS = ssl.create_default_context()


@dataclass
class SandboxHandle:
    """One test's view of the sandbox: its base URL, its own key, and admin helpers."""

    server: SandboxServer
    api_key: str
    admin: httpx.Client = field(repr=False)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def webhook_secret(self) -> str:
        """The `whsec_...` secret webhooks are signed with (server-wide)."""
        return self.server.settings.webhook_secret.get_secret_value()

    def configure(self, **fields: Any) -> dict[str, Any]:
        """PATCH this key's config; returns the effective config."""
        resp = self.admin.patch("/_sandbox/config", json=fields)
        resp.raise_for_status()
        config: dict[str, Any] = resp.json()
        return config

    def ledger(self) -> dict[str, Any]:
        return self._get("/_sandbox/ledger")

    def journal(self) -> list[dict[str, Any]]:
        return self._get("/_sandbox/journal")

    def tasks(self) -> list[dict[str, Any]]:
        return self._get("/_sandbox/tasks")

    def webhooks(self) -> list[dict[str, Any]]:
        return self._get("/_sandbox/webhooks")

    def set_balance(self, balance: int) -> dict[str, Any]:
        resp = self.admin.put("/_sandbox/ledger", json={"balance": balance})
        resp.raise_for_status()
        ledger: dict[str, Any] = resp.json()
        return ledger

    def _get(self, path: str) -> Any:
        resp = self.admin.get(path)
        resp.raise_for_status()
        return resp.json()


@contextmanager
def open_key(server: SandboxServer) -> Iterator[SandboxHandle]:
    """A fresh key (`sandbox-<uuid hex>`) on `server`, with tasks finishing at once; reset and closed after.

    The per-address rate limit is off for these keys (every test shares 127.0.0.1); the per-key limit
    stays on. Tests that need timing set `duration_mode` / `time_scale` themselves.
    """
    key = f"sandbox-{uuid.uuid4().hex}"
    admin = httpx.Client(base_url=server.base_url, trust_env=False, timeout=10.0,
                         verify=TLS, headers={"Authorization": f"Bearer {key}"})
    handle = SandboxHandle(server, key, admin)
    handle.configure(duration_mode="immediate", rate_limit_per_ip=False)
    try:
        yield handle
    finally:
        admin.post("/_sandbox/reset")
        admin.close()


@contextmanager
def key_client(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """The vendor API as a client sees it on the test's key, rate limiting off (tests turn it back on)."""
    sandbox.configure(rate_limit_enabled=False)
    with httpx.Client(base_url=sandbox.base_url, trust_env=False, timeout=10.0, verify=TLS,
                      headers={"Authorization": f"Bearer {sandbox.api_key}"}) as client:
        yield client


async def spend(sandbox: Any, folder: Path, n: int = 1) -> list[str]:
    """Make `n` tasks on the sandbox key directly (each charged 4 units), as another program would."""
    from backdrop.client import BackdropClient
    from backdrop.settings import BackdropSettings

    save_picture(folder / "x.jpg", 50, 50, (250, 250, 250))
    settings = BackdropSettings(api_url=sandbox.base_url, api_key=sandbox.api_key, feature="bg-replace")
    made: list[str] = []
    async with BackdropClient(settings) as client:
        for _ in range(n):
            file_id = await client.upload_file(folder / "x.jpg", content_type="image/jpeg")
            task_id = (await client.create_task(src_file_id=file_id, prompt="x")).task_id
            while (await client.get_task(task_id)).status == "running":  # noqa: ASYNC110 - polls over HTTP
                await asyncio.sleep(0.02)
            made.append(task_id)
    return made
