"""The README states the fences a user meets and the settings that open them, with the code's own names."""

from __future__ import annotations

import re
from pathlib import Path

from backdrop.pipeline.webhooks import WEBHOOK_PATH
from backdrop.sandbox.settings import SandboxSettings
from backdrop.settings import BackdropSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_the_csv_section_states_the_roots_and_the_url_allow_lists() -> None:
    csv = _section("The CSV")
    for name in ("input_roots", "output_roots", "csv_url_schemes", "csv_url_hosts", "csv_max_bytes"):
        assert name in BackdropSettings.model_fields
        assert f"BACKDROP_{name.upper()}" in csv, name
    assert "/proc/self/environ" in csv and "file://" in csv


def test_the_deployment_section_states_the_deployments_roots() -> None:
    prefect = _section("Running it with Prefect")
    assert "BACKDROP_INPUT_ROOTS" in prefect and "BACKDROP_OUTPUT_ROOTS" in prefect
    assert "job variables" in prefect.lower()


def test_webhooks_need_https_through_a_tls_front_to_the_listen_address() -> None:
    prefect = _section("Running it with Prefect")
    assert "HTTPS" in prefect and "TLS front" in prefect
    assert f"https://hooks.example.com{WEBHOOK_PATH}" in prefect
    proxied = re.search(r"handle (\S+) \{\s*reverse_proxy (\S+)", prefect)
    assert proxied and proxied.group(1) == WEBHOOK_PATH
    assert f"BACKDROP_WEBHOOK_LISTEN={proxied.group(2)}" in prefect
    # the public URL is the console's and the proxy's business: no setting of Backdrop's pretends otherwise
    assert not [f for f in BackdropSettings.model_fields if "public" in f]


def test_the_sandbox_section_states_how_it_is_exposed_and_what_it_fetches() -> None:
    sandbox = _section("The sandbox")
    assert "--allow-remote" in sandbox and "X-Sandbox-Admin-Token" in sandbox
    for name in ("admin_token", "allow_private_fetch"):
        assert name in SandboxSettings.model_fields
        assert f"BACKDROP_SANDBOX_{name.upper()}" in sandbox, name
