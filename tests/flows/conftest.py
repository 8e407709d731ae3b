"""Flow tests: one Prefect test server for the session, a fresh result store, and the sandbox.

Their helpers are in tests/flows/helpers.py and tests/support/."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(autouse=True, scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # The harness swaps the database only; results (the cache) need their own fresh folder too.
    store = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: store}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(autouse=True)
def prefect_unclosed_clients(prefect_harness: None) -> Iterator[None]:
    """Prefect's leaked API connections are not ours: ignore them (only them) in the flow tests.

    Prefect's flow engine (3.8.8, unchanged in 3.9.1) opens a PrefectClient for a flow run's result store
    (prefect/results.py) and never closes it; its sockets to the test server are collected unclosed
    (ResourceWarning, an error under pyproject's filterwarnings). The filter names that server's port, so a
    socket of ours still fails; it holds for this test's setup, call and teardown, and the teardown collects
    the leftovers under it.
    """
    port = urlsplit(PREFECT_API_URL.value()).port
    warnings.filterwarnings(
        "ignore", category=ResourceWarning,
        message=rf"unclosed <socket\.socket .*raddr=\('127\.0\.0\.1', {port}\)>")
    yield
    gc.collect()


@pytest.fixture
def pipeline_env(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the pipeline at this test's sandbox key, with its own ledger and fast polling."""
    monkeypatch.setenv("BACKDROP_API_URL", sandbox.base_url)
    monkeypatch.setenv("BACKDROP_API_KEY", sandbox.api_key)
    monkeypatch.setenv("BACKDROP_ACCOUNT", sandbox.api_key)  # each sandbox key is an account of its own
    monkeypatch.setenv("BACKDROP_HOME", str(tmp_path / "home"))
    # Flow tests serve their pictures from 127.0.0.1, which the fetch fence refuses unless opened (the sandbox, the
    # API's own host, needs no opening): open that address only, as a deployment opens an internal catalogue.
    monkeypatch.setenv("BACKDROP_FETCH_ALLOW_NETWORKS", "127.0.0.1/32")
    for name, value in (("POLL_FIRST_SECONDS", "0.02"), ("POLL_INTERVAL_SECONDS", "0.02"),
                        ("POLL_MAX_INTERVAL_SECONDS", "0.1"), ("BACKOFF_BASE_SECONDS", "0.01"),
                        ("BACKOFF_MAX_SECONDS", "0.05"),
                        # a sandbox task is charged within a second or two: settle lost creates in the run
                        ("RECONCILE_AFTER_SECONDS", "4"), ("SETTLE_WAIT_SECONDS", "40")):
        monkeypatch.setenv(f"BACKDROP_{name}", value)
    return sandbox
