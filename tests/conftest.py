"""Fixtures every test directory may use: a clean environment and a loopback sandbox.

`sandbox_server` is one real uvicorn on 127.0.0.1:<free port> for the whole session; `sandbox`
gives each test its own API key (`sandbox-<uuid hex>`), hence its own files, tasks, ledger,
journal and config, so tests never see each other's state.
"""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from backdrop.sandbox import SandboxServer, SandboxSettings

# One TLS context for every test client: building one per httpx.Client costs ~50 ms, and the
# sandbox is plain HTTP on loopback anyway.
TLS = ssl.create_default_context()
_PROXY_VARS = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
# The CI script's switches for service-backed tests are not settings: keep them.
_KEEP = ("BACKDROP_TEST_", "BACKDROP_REQUIRE_SERVICES")


def _leaks(name: str) -> bool:
    if name.startswith("BACKDROP_"):
        return not name.startswith(_KEEP)
    return name == "PREFECT_API_URL" or name.upper() in _PROXY_VARS


@pytest.fixture(scope="session", autouse=True)
def clean_environ() -> Iterator[None]:
    """Remove BACKDROP_* settings, PREFECT_API_URL and proxies for the whole session."""
    mp = pytest.MonkeyPatch()
    for name in [n for n in os.environ if _leaks(n)]:
        mp.delenv(name)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def sandbox_server(clean_environ: None) -> Iterator[SandboxServer]:
    """One sandbox with default settings for the session."""
    with SandboxServer(SandboxSettings()) as server:
        yield server


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


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxHandle]:
    """A fresh key on the session sandbox, with tasks finishing at once.

    Tests that need timing set `duration_mode` / `time_scale` themselves. The per-address rate
    limit is off for these keys (every test shares 127.0.0.1); the per-key limit stays on.
    """
    key = f"sandbox-{uuid.uuid4().hex}"
    admin = httpx.Client(base_url=sandbox_server.base_url, trust_env=False, timeout=10.0,
                         verify=TLS, headers={"Authorization": f"Bearer {key}"})
    handle = SandboxHandle(sandbox_server, key, admin)
    handle.configure(duration_mode="immediate", rate_limit_per_ip=False)
    try:
        yield handle
    finally:
        admin.post("/_sandbox/reset")
        admin.close()
