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
from contextlib import contextmanager
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
def clean_environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Remove BACKDROP_* settings, PREFECT_API_URL and proxies for the whole session.

    Runs read CSVs and write outputs only inside their roots (default the current folder): tests keep theirs
    under pytest's temporary folder, so that folder is the one root, said explicitly.
    """
    mp = pytest.MonkeyPatch()
    for name in [n for n in os.environ if _leaks(n)]:
        mp.delenv(name)
    base = str(tmp_path_factory.getbasetemp().resolve())
    mp.setenv("BACKDROP_INPUT_ROOTS", base)
    mp.setenv("BACKDROP_OUTPUT_ROOTS", base)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def sandbox_server(clean_environ: None) -> Iterator[SandboxServer]:
    """One sandbox with default settings for the session, except one: tests serve pictures and receive webhooks
    on loopback, which a sandbox refuses to reach unless told (allow_private_fetch)."""
    with SandboxServer(SandboxSettings(allow_private_fetch=True)) as server:
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


# --- tests that need a real service -------------------------------------------------------------
# They skip, with a reason that says how to enable them, on a machine without the service; CI sets
# BACKDROP_REQUIRE_SERVICES=1 (see .ci/run), which turns any such skip into a failure.
_SERVICE_MARKERS = ("postgres", "redis", "chromium", "prefect_server")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    required = os.environ.get("BACKDROP_REQUIRE_SERVICES") == "1"
    if required and report.skipped and any(item.get_closest_marker(m) for m in _SERVICE_MARKERS):
        report.outcome = "failed"
        report.longrepr = f"skipped, but BACKDROP_REQUIRE_SERVICES=1 requires it to run: {report.longrepr}"


def postgres_url() -> str:
    """The PostgreSQL test database, or skip with how to enable it."""
    url = os.environ.get("BACKDROP_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set BACKDROP_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test to run")
    return url


def redis_url() -> str:
    """The Redis test server, or skip with how to enable it."""
    url = os.environ.get("BACKDROP_TEST_REDIS_URL")
    if not url:
        pytest.skip("set BACKDROP_TEST_REDIS_URL=redis://127.0.0.1:6379/0 to run")
    return url


@contextmanager
def fresh_postgres_database(prefix: str = "backdrop_test") -> Iterator[str]:
    """A new database on the test PostgreSQL server (skips without one); dropped, with its engines, after."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(postgres_url())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        from backdrop.store import ledger as _ledger

        for url in [u for u in _ledger._engines if name in u]:
            _ledger._engines.pop(url).dispose()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server for this session, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url
