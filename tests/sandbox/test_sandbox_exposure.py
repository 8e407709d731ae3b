"""The sandbox binds loopback unless told otherwise, guards its admin routes once exposed, and fetches nothing
private (src_file_url, webhooks) unless allowed (review finding 17)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from backdrop.sandbox import SandboxServer, SandboxSettings, engine, netguard
from backdrop.sandbox.server import RemoteBindRefused, guard_bind
from tests.support.images import picture
from tests.support.loopback import LoopbackHTTP
from tests.support.vendor_api import create, poll_until_done, put_bytes, request_slot
from tests.support.waiting import wait_until

ADMIN_ROUTES = [("GET", "/_sandbox/health"), ("POST", "/_sandbox/reset"), ("GET", "/_sandbox/config"),
                ("PATCH", "/_sandbox/config"), ("GET", "/_sandbox/ledger"), ("PUT", "/_sandbox/ledger"),
                ("GET", "/_sandbox/journal"), ("GET", "/_sandbox/tasks"), ("GET", "/_sandbox/webhooks"),
                ("GET", "/_sandbox/templates/studio_white.jpg")]
KEY = "sandbox-exposure"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "sandbox.example.com"])
def test_a_non_loopback_host_without_the_flag_is_refused(host: str) -> None:
    with pytest.raises(RemoteBindRefused, match="--allow-remote"):
        guard_bind(host, SandboxSettings(), allow_remote=False)
    with pytest.raises(RemoteBindRefused):
        SandboxServer(host=host)
    for loopback in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert guard_bind(loopback, SandboxSettings(), allow_remote=False)[1] is None


def test_the_command_refuses_a_public_bind_before_listening() -> None:
    proc = subprocess.run([sys.executable, "-m", "backdrop.sandbox", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--allow-remote" in proc.stderr and proc.stdout == ""


@pytest.fixture(scope="module")
def exposed() -> Iterator[SandboxServer]:
    """A sandbox bound to every address, with the flag: a random admin token guards /_sandbox/."""
    settings = SandboxSettings(duration_mode="immediate", rate_limit_per_ip=False)
    with SandboxServer(settings, host="0.0.0.0", allow_remote=True) as server:
        yield server


def _local(server: SandboxServer, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.port}", trust_env=False, timeout=10.0,
                        headers={"Authorization": f"Bearer {KEY}", **headers})


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_exposed_admin_routes_need_the_token(exposed: SandboxServer, method: str, path: str) -> None:
    token = exposed.admin_token
    assert token and len(token) >= 24
    body = {"PATCH": {"fault_5xx_rate": 0}, "PUT": {"balance": 100}}.get(method)
    with _local(exposed) as stranger:
        assert stranger.request(method, path, json=body).status_code == 401
    wrong = token[:-1] + ("x" if token[-1] != "x" else "y")  # one character off (a token may end in "x")
    with _local(exposed, **{"X-Sandbox-Admin-Token": wrong}) as guesser:
        assert guesser.request(method, path, json=body).status_code == 403
    with _local(exposed, **{"X-Sandbox-Admin-Token": token}) as admin:
        assert admin.request(method, path, json=body).status_code == 200


def test_exposed_vendor_routes_still_answer_with_a_key(exposed: SandboxServer) -> None:
    with _local(exposed) as client:
        assert client.get("/s2s/v1.0/client/credit").status_code == 200


def test_two_exposed_sandboxes_get_different_tokens_and_a_set_token_is_kept() -> None:
    first = guard_bind("0.0.0.0", SandboxSettings(), allow_remote=True)[1]
    second = guard_bind("0.0.0.0", SandboxSettings(), allow_remote=True)[1]
    assert first and second and first != second
    settings, generated = guard_bind("0.0.0.0", SandboxSettings(admin_token="chosen-token-123"), allow_remote=True)
    assert generated is None and settings.admin_token.get_secret_value() == "chosen-token-123"


def test_the_command_prints_the_token_once_and_it_opens_the_admin_routes(tmp_path: Path) -> None:
    ready = tmp_path / "url"
    log = tmp_path / "out.txt"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "backdrop.sandbox", "--host", "0.0.0.0", "--port", "0",
                                 "--allow-remote", "--ready-file", str(ready)], stdout=sink,
                                stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: ready.exists() and ready.read_text().strip(), 30), log.read_text()
        port = ready.read_text().strip().rsplit(":", 1)[1]
        lines = [line for line in log.read_text().splitlines() if "X-Sandbox-Admin-Token" in line]
        assert len(lines) == 1, log.read_text()
        token = lines[0].rsplit(": ", 1)[1].strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10.0) as client:
            assert client.get("/_sandbox/health").status_code == 401
            assert client.get("/_sandbox/health", headers={"X-Sandbox-Admin-Token": token}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_token_from_the_settings_also_guards_a_loopback_sandbox() -> None:
    with SandboxServer(SandboxSettings(admin_token="loopback-admin-token")) as server, \
            _local(server) as client:
        assert client.get("/_sandbox/config").status_code == 401
        assert client.get("/_sandbox/config", headers={"X-Sandbox-Admin-Token": "loopback-admin-token"}).json()


@pytest.fixture(scope="module")
def fenced() -> Iterator[SandboxServer]:
    """A loopback sandbox with default fetch rules: it reaches public addresses only."""
    with SandboxServer(SandboxSettings(duration_mode="immediate", rate_limit_enabled=False)) as server:
        yield server


def test_the_engine_refuses_a_private_src_file_url_by_default(fenced: SandboxServer, loopback: LoopbackHTTP) -> None:
    loopback.routes["/p.jpg"] = (200, picture())
    with _local(fenced) as api:
        data = poll_until_done(api, create(api, src_file_url=loopback.url("/p.jpg"), prompt="beach"))
        assert (data["task_status"], data["error"]) == ("error", "error_download_image")
        assert "refused" in data["error_message"]
        assert api.get("/_sandbox/ledger").json()["charges"] == []
    for url in ("http://10.0.0.1/a.jpg", "http://169.254.169.254/latest/meta-data", "http://[::1]:9/a.jpg",
                "http://[::ffff:127.0.0.1]/a.jpg", "http://localhost/a.jpg", "http://0.0.0.0/a.jpg"):
        with pytest.raises(engine.EngineFailure) as caught:
            engine._fetch(url, 2.0)
        assert caught.value.code == "error_download_image"


def test_the_private_fetch_switch_is_server_wide_never_per_key(fenced: SandboxServer) -> None:
    with _local(fenced) as api:
        resp = api.patch("/_sandbox/config", json={"allow_private_fetch": True})
        assert resp.status_code == 400 and "allow_private_fetch" in resp.json()["error"]
        assert "allow_private_fetch" not in api.get("/_sandbox/config").json()


def test_a_redirect_to_a_private_address_is_refused(loopback: LoopbackHTTP, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each hop is checked: here 127.0.0.1 plays a public host whose answer redirects to a private one."""
    port = loopback.url("/").rsplit(":", 1)[1].rstrip("/")
    loopback.routes["/p.jpg"] = (200, picture())
    monkeypatch.setattr(netguard, "is_public", lambda address: address == "127.0.0.1")
    assert engine._fetch(loopback.url("/p.jpg"), 2.0) == picture()  # the stand-in public host is reachable

    hop = LoopbackHTTP()
    try:
        hop.routes["/go"] = (200, b"")
        hop._server.RequestHandlerClass.do_GET = _redirect_to(f"http://127.0.0.2:{port}/p.jpg")  # type: ignore[method-assign]
        with pytest.raises(engine.EngineFailure, match="error_download_image"):
            engine._fetch(hop.url("/go"), 2.0)
    finally:
        hop.close()


def _redirect_to(target: str) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def do_get(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return do_get


def test_webhooks_to_a_private_address_are_never_sent(fenced: SandboxServer, loopback: LoopbackHTTP) -> None:
    with _local(fenced) as api:
        api.patch("/_sandbox/config", json={"webhook_urls": [loopback.url("/hook")]}).raise_for_status()
        slot = request_slot(api, picture())
        assert put_bytes(slot, picture()).status_code == 200
        poll_until_done(api, create(api, src_file_id=slot["file_id"], prompt="beach"))
        hooks = wait_until(lambda: [w for w in api.get("/_sandbox/webhooks").json() if w["attempts"]], 10)
    assert hooks and hooks[0]["delivered"] is False
    assert hooks[0]["attempts"][0]["error"].startswith("refused")
    time.sleep(0.2)
    assert loopback.posts == []
