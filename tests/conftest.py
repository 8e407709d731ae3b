"""Fixtures every test directory may use: a clean environment, a loopback sandbox, PostgreSQL.

`sandbox_server` is one real uvicorn on 127.0.0.1:<free port> for the whole session; `sandbox`
gives each test its own API key (`sandbox-<uuid hex>`), hence its own files, tasks, ledger,
journal and config, so tests never see each other's state. The helpers behind these fixtures live
in `tests/support/` (import helpers from there, never from a conftest).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from backdrop.pacing import memory as memory_limiter
from backdrop.sandbox import SandboxServer, SandboxSettings
from tests.support.sandbox import SandboxHandle, open_key
from tests.support.services import fresh_postgres_database

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


@pytest.fixture(autouse=True)
def own_limiters() -> None:
    """Each test starts with the process's limiters new. A limiter keeps room for the polls of the tasks it owes
    until they finish or go unpolled for a few rounds (a minute at the default gap); tests that create tasks and never
    poll them to the end would otherwise leave that debt to the next tests on the same sandbox key."""
    memory_limiter._shared.clear()


@pytest.fixture(autouse=True)
def own_egress(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Each test leaves through an address of its own (BACKDROP_EGRESS_ID), as each has a sandbox key of its own.

    The per-address budget (250 requests per 300 s for every key on one address) is process-wide by design, so
    without this the session's tests would share one budget and, a few hundred requests in, wait minutes for it.
    A test about sharing an address gives its clients one id explicitly (or inherits this test's in subprocesses).
    """
    monkeypatch.setenv("BACKDROP_EGRESS_ID", "test-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16])


@pytest.fixture(scope="session")
def sandbox_server(clean_environ: None) -> Iterator[SandboxServer]:
    """One sandbox with default settings for the session, except one: tests serve pictures and receive webhooks
    on loopback, which a sandbox refuses to reach unless told (allow_private_fetch)."""
    with SandboxServer(SandboxSettings(allow_private_fetch=True)) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxHandle]:
    """A fresh key on the session sandbox, with tasks finishing at once (see `tests.support.sandbox.open_key`)."""
    with open_key(sandbox_server) as handle:
        yield handle


# --- tests that need a real service -------------------------------------------------------------
# They skip, with a reason that says how to enable them, on a machine without the service; CI sets
# BACKDROP_REQUIRE_SERVICES=1 (see .ci/run), which turns any such skip into a failure.
_SERVICE_MARKERS = ("postgres", "chromium", "prefect_server")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    required = os.environ.get("BACKDROP_REQUIRE_SERVICES") == "1"
    if required and report.skipped and any(item.get_closest_marker(m) for m in _SERVICE_MARKERS):
        report.outcome = "failed"
        report.longrepr = f"skipped, but BACKDROP_REQUIRE_SERVICES=1 requires it to run: {report.longrepr}"


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server for this session, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url
