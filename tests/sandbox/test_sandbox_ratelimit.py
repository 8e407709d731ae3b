"""Rate limits: N per rolling window and M per second, per key and per client address."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.support.images import picture
from tests.support.sandbox import TLS, SandboxHandle
from tests.support.vendor_api import put_bytes, request_slot
from tests.support.waiting import wait_until

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
    """A window at time scale N lasts 1/N as long: refused until the scaled window ends, admitted after."""
    scale = 200
    window_s = 300 / scale  # the default 300 vendor seconds: 1.5 s real (it would be 300 s unscaled)
    sandbox.configure(rate_limit_enabled=True, rate_limit_requests=2, rate_limit_per_second=100,
                      time_scale=scale)
    start = time.monotonic()  # before the first accepted request: the window cannot end before start + window_s
    assert _statuses(api, 3) == [200, 200, 429]  # the window is full

    # still refused a third of the way through the scaled window (refusals count nowhere, so asking is free)
    time.sleep(window_s / 3)  # lets time pass on purpose: the window must still be closed
    refused = api.get(CREDIT).status_code
    asked_at = time.monotonic() - start
    assert asked_at < window_s, f"the check came {asked_at:.2f} s in, after the {window_s} s window"
    assert refused == 429

    # admitted again once the scaled window has passed, and not before (nor long after: a 3x margin)
    def admitted() -> float | None:  # seconds since start once answered 200 (after the server admitted it)
        status = api.get(CREDIT).status_code
        return time.monotonic() - start if status == 200 else None

    reopened = wait_until(admitted, timeout=3 * window_s, interval=0.05,
                          message=f"still refused {3 * window_s:.1f} s on: the window outlasts 300 s at {scale}x")
    assert reopened is not None and reopened >= window_s


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
