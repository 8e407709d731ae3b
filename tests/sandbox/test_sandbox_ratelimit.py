"""Rate limits: N per rolling window and M per second, per key and per client address."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.conftest import TLS, SandboxHandle
from tests.sandbox.helpers import picture, put_bytes, request_slot

CREDIT = "/s2s/v1.0/client/credit"
TOO_MANY = {"status": 429, "error": "Too many requests"}


def _statuses(api: httpx.Client, n: int, path: str = CREDIT) -> list[int]:
    return [api.get(path).status_code for _ in range(n)]


def test_window_limit_answers_429_without_hints(api: httpx.Client,
                                                sandbox: SandboxHandle) -> None:
    sandbox.configure(rate_limit_enabled=True, rate_limit_requests=3, rate_limit_per_second=100)
    assert _statuses(api, 3) == [200, 200, 200]
    resp = api.get(CREDIT)
    assert resp.status_code == 429
    assert resp.json() == TOO_MANY
    assert "retry-after" not in resp.headers
    assert not [h for h in resp.headers if "ratelimit" in h.lower()]
    assert resp.headers["x-request-id"].isdigit()
    refused = [e for e in sandbox.journal() if e["status"] == 429]
    assert [(e["route"], e.get("fault")) for e in refused] == [("credit", "rate_limit")]


def test_per_second_limit(api: httpx.Client, sandbox: SandboxHandle) -> None:
    # at 0.01x one vendor second lasts 100 real seconds: the burst surely falls in one second
    sandbox.configure(rate_limit_enabled=True, rate_limit_per_second=2, time_scale=0.01)
    assert _statuses(api, 3) == [200, 200, 429]


def test_window_shrinks_with_time_scale(api: httpx.Client, sandbox: SandboxHandle) -> None:
    # 300 vendor seconds at 3000x = 0.1 s real
    sandbox.configure(rate_limit_enabled=True, rate_limit_requests=2, rate_limit_per_second=100,
                      time_scale=3000)
    first = _statuses(api, 3)
    time.sleep(0.15)
    assert first[:2] == [200, 200] and first[2] in (200, 429)
    assert api.get(CREDIT).status_code == 200


def test_storage_and_admin_are_not_counted(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(rate_limit_enabled=True, rate_limit_requests=1, rate_limit_per_second=100)
    data = picture()
    slot = request_slot(api, data)  # the one allowed vendor request
    assert put_bytes(slot, data).status_code == 200
    for _ in range(3):
        sandbox.ledger()
    assert api.get(CREDIT).status_code == 429


def test_client_address_limit_spans_keys(sandbox: SandboxHandle) -> None:
    # From 127.0.0.2, an address no other test uses, so its bucket starts empty.
    keys = [f"sandbox-ip-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    clients = [httpx.Client(base_url=sandbox.base_url, trust_env=False, verify=TLS,
                            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
                            headers={"Authorization": f"Bearer {k}"}) for k in keys]
    try:
        for c in clients:
            # the per-key limit (3) alone would allow every request below
            c.patch("/_sandbox/config", json={"rate_limit_requests": 3,
                                               "rate_limit_per_second": 100,
                                               "rate_limit_per_ip": True}).raise_for_status()
        a, b = clients
        assert _statuses(a, 2) + _statuses(b, 1) == [200, 200, 200]
        assert b.get(CREDIT).status_code == 429
        assert {e["client"] for e in b.get("/_sandbox/journal").json()} == {"127.0.0.2"}
    finally:
        for c in clients:
            c.post("/_sandbox/reset")
            c.close()


def test_rate_limit_is_per_key(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(rate_limit_enabled=True, rate_limit_requests=1, rate_limit_per_second=100)
    assert _statuses(api, 2) == [200, 429]
    other = httpx.Client(base_url=sandbox.base_url, trust_env=False, verify=TLS,
                         headers={"Authorization": f"Bearer sandbox-{uuid.uuid4().hex}"})
    with other:
        other.patch("/_sandbox/config", json={"rate_limit_per_ip": False})
        assert other.get(CREDIT).status_code == 200
        other.post("/_sandbox/reset")
