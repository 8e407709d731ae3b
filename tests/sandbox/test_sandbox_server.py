"""Serving: the background-thread server, app independence, and `python -m backdrop.sandbox`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backdrop.sandbox import SandboxServer, SandboxSettings
from tests.support.sandbox import TLS

ROOT = Path(__file__).resolve().parents[2]


def _client(base_url: str, key: str = "sandbox-key") -> httpx.Client:
    return httpx.Client(base_url=base_url, trust_env=False, verify=TLS, timeout=5.0,
                        headers={"Authorization": f"Bearer {key}"})


def test_servers_get_free_ports_and_separate_state() -> None:
    settings = SandboxSettings(starting_balance=12, rate_limit_enabled=False)
    with SandboxServer(settings) as one, SandboxServer(SandboxSettings()) as two:
        assert one.base_url.startswith("http://127.0.0.1:") and one.port != two.port
        with _client(one.base_url) as a, _client(two.base_url) as b:
            a.put("/_sandbox/ledger", json={"balance": 5})
            assert a.get("/s2s/v1.0/client/credit").json()["results"][0]["amount"] == 5
            assert b.get("/s2s/v1.0/client/credit").json()["results"][0]["amount"] == 10000
        url = one.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/_sandbox/health", trust_env=False, verify=TLS)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_SANDBOX_STARTING_BALANCE", "44")
    monkeypatch.setenv("BACKDROP_SANDBOX_API_KEYS", '["team-key"]')
    settings = SandboxSettings()
    assert (settings.starting_balance, settings.api_keys) == (44, ["team-key"])
    assert settings.webhook_secret.get_secret_value().startswith("whsec_")
    assert "whsec_" not in repr(settings)


def test_module_cli_serves_on_port_0_and_stops_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "url.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKDROP_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "backdrop.sandbox", "--port", "0", "--ready-file", str(ready),
         "--balance", "20", "--duration-mode", "immediate", "--time-scale", "10"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while not ready.exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        url = ready.read_text().strip()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        with _client(url) as c:
            assert c.get("/_sandbox/health").status_code == 200
            config = c.get("/_sandbox/config").json()
            assert (config["starting_balance"], config["duration_mode"], config["time_scale"]) == (
                20, "immediate", 10.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"Backdrop sandbox: {url}  (API key: sandbox-key)" in out
