"""Webhook mode: Standard Webhooks verification, replay protection (webhook_signing), and the receiver a wait
uses (webhooks)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import pickle
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backdrop.client import BackdropClient
from backdrop.errors import BackdropError, ConfigError, WebhookRejected
from backdrop.pipeline.webhook_signing import ReplayGuard, WebhookEvent, verify
from backdrop.pipeline.webhooks import WEBHOOK_PATH, WebhookReceiver
from backdrop.settings import BackdropSettings
from tests.support.images import save_picture
from tests.support.sandbox import SandboxHandle
from tests.support.waiting import until

SECRET = "whsec_" + base64.b64encode(b"backdrop-test-webhook-key-32byte").decode()
OTHER = "whsec_" + base64.b64encode(b"someone-else-s-webhook-key-bytes").decode()
NOW = 1_761_112_900


def sign(secret: str, msg_id: str, ts: int | str, body: bytes) -> str:
    """`v1,<sig>`, written from the Standard Webhooks spec independently of the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def payload(task_id: str = "task-1", status: str = "success", created_at: int = NOW) -> bytes:
    data = {"created_at": created_at, "data": {"task_id": task_id, "task_status": status}}
    return json.dumps(data, separators=(",", ":")).encode()


def signed(body: bytes, *, msg_id: str = "msg_task-1:1", ts: int = NOW,
           secret: str = SECRET) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, msg_id, ts, body), "content-type": "application/json"}


def rejected(headers: dict[str, str], body: bytes, **kw: Any) -> str:
    with pytest.raises(WebhookRejected) as info:
        verify(SECRET, headers, body, now=kw.pop("now", NOW), **kw)
    return info.value.reason


# ---- verify ------------------------------------------------------------------------------------


def test_the_specs_published_example_signature_matches() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    body = b'{"test": 2432232314}'
    with pytest.raises(WebhookRejected) as info:
        verify(secret, headers, body, now=1614265330)
    # the signature passed: only the (non-Perfect-Corp) body shape is refused
    assert info.value.reason == "body lacks data.task_id or data.task_status"
    headers["webhook-signature"] = "v1,h0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    with pytest.raises(WebhookRejected, match="no valid v1 signature"):
        verify(secret, headers, body, now=1614265330)


@pytest.mark.parametrize("secret", [SECRET, SECRET.removeprefix("whsec_")])
def test_a_valid_delivery_gives_its_event(secret: str) -> None:
    body = payload("t-42", "error", created_at=NOW - 3)
    headers = {k.title(): v for k, v in signed(body, msg_id="msg_t-42:7").items()}
    event = verify(secret, headers, body, now=NOW)
    assert event == WebhookEvent(id="msg_t-42:7", timestamp=NOW, task_id="t-42",
                                 task_status="error", created_at=NOW - 3)


@pytest.mark.parametrize("order", ["good-last", "good-first"])
def test_any_of_several_signatures_passes(order: str) -> None:
    body = payload()
    good = signed(body)["webhook-signature"]
    others = [sign(OTHER, "msg_task-1:1", NOW, body), "v1a,bm90LWEtcmVhbC1zaWduYXR1cmU=", "v1,"]
    entries = [*others, good] if order == "good-last" else [good, *others]
    headers = {**signed(body), "webhook-signature": "  ".join(entries)}
    assert verify(SECRET, headers, body, now=NOW).task_id == "task-1"


def test_only_a_v1_signature_counts() -> None:
    body = payload()
    sig = signed(body)["webhook-signature"].removeprefix("v1,")
    assert rejected({**signed(body), "webhook-signature": f"v2,{sig} {sig}"}, body) == (
        "no valid v1 signature")


def test_wrong_secret_is_rejected() -> None:
    body = payload()
    assert rejected(signed(body, secret=OTHER), body) == "no valid v1 signature"


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp"])
def test_tampering_is_rejected(tamper: str) -> None:
    body = payload()
    headers = signed(body)
    if tamper == "body":
        body = payload(status="error")
    elif tamper == "id":
        headers["webhook-id"] = "msg_task-1:2"
    else:
        headers["webhook-timestamp"] = str(NOW + 1)
    assert rejected(headers, body) == "no valid v1 signature"


@pytest.mark.parametrize(
    ("offset", "tolerance", "reason"),
    [(-300, 300, None), (300, 300, None), (-301, 300, "timestamp too old"),
     (301, 300, "timestamp too far in the future"), (-10, 10, None), (-11, 10, "timestamp too old"),
     (-86400, 300, "timestamp too old")],
)
def test_timestamp_tolerance_edges(offset: int, tolerance: float, reason: str | None) -> None:
    body = payload()
    headers = signed(body, ts=NOW + offset)
    if reason is None:
        event = verify(SECRET, headers, body, tolerance_s=tolerance, now=NOW)
        assert event.timestamp == NOW + offset
    else:
        assert rejected(headers, body, tolerance_s=tolerance) == reason


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_or_empty_headers_are_rejected(missing: str) -> None:
    body = payload()
    headers = signed(body)
    del headers[missing]
    assert rejected(headers, body) == f"missing header {missing}"
    assert rejected({**signed(body), missing: " "}, body) == f"missing header {missing}"


@pytest.mark.parametrize("stamp", ["1761112900.5", "-5", "soon", "1e9"])
def test_a_timestamp_must_be_unix_seconds(stamp: str) -> None:
    body = payload()
    headers = {**signed(body), "webhook-timestamp": stamp}
    assert rejected(headers, body) == "webhook-timestamp is not Unix seconds"


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"not json", "body is not JSON"), (b"\xff\xfe", "body is not JSON"),
     (b"[1, 2]", "body lacks data.task_id or data.task_status"),
     (b'{"created_at": 1, "data": {"task_id": ""}}', "body lacks data.task_id or data.task_status"),
     (b'{"data": {"task_id": "t", "task_status": "success"}}', "body lacks a numeric created_at"),
     (b'{"created_at": true, "data": {"task_id": "t", "task_status": "success"}}',
      "body lacks a numeric created_at")],
)
def test_a_signed_but_malformed_body_is_rejected(body: bytes, reason: str) -> None:
    assert rejected(signed(body), body) == reason


@pytest.mark.parametrize("secret", ["whsec_not*base64", "whsec_", ""])
def test_an_unusable_secret_is_a_config_error(secret: str) -> None:
    body = payload()
    with pytest.raises(ConfigError) as info:
        verify(secret, signed(body), body, now=NOW)
    assert "not*base64" not in str(info.value)


def test_rejections_name_no_secret_or_signature_and_survive_pickling() -> None:
    body = payload()
    headers = signed(body, secret=OTHER)
    with pytest.raises(WebhookRejected) as info:
        verify(SECRET, headers, body, now=NOW)
    err = pickle.loads(pickle.dumps(info.value))
    assert isinstance(err, BackdropError) and err.reason == "no valid v1 signature"
    assert err.report_code == "webhook_rejected"
    text = f"{err} {err!r}"
    sig = headers["webhook-signature"].removeprefix("v1,")
    assert sig not in text and SECRET.removeprefix("whsec_") not in text


# ---- ReplayGuard -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_replay_guard_admits_an_id_once_within_its_ttl() -> None:
    clock = FakeClock()
    guard = ReplayGuard(60, clock=clock)
    assert [guard.admit("a"), guard.admit("a"), guard.admit("b")] == [True, False, True]
    clock.now += 59.9
    assert guard.admit("a") is False
    clock.now += 0.1
    assert [guard.admit("a"), len(guard)] == [True, 1]


def test_replay_guard_is_bounded() -> None:
    guard = ReplayGuard(3600, max_ids=3, clock=FakeClock())
    assert all(guard.admit(i) for i in "abcd")
    assert len(guard) == 3
    assert [guard.admit("d"), guard.admit("b"), guard.admit("a")] == [False, False, True]


# ---- the receiver over loopback ----------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as r:
        yield r


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        yield client


def deliver(http: httpx.Client, r: WebhookReceiver, task_id: str, status: str = "success", *,
            msg_id: str | None = None, secret: str = SECRET) -> int:
    """POST a freshly signed delivery, as the vendor would; returns the answer's status."""
    body = payload(task_id, status)
    headers = signed(body, msg_id=msg_id or f"msg_{task_id}:{NOW}", ts=int(time.time()),
                     secret=secret)
    return http.post(r.url, content=body, headers=headers).status_code


def test_url_is_the_loopback_endpoint_and_repr_hides_the_secret(receiver: WebhookReceiver) -> None:
    assert receiver.url.startswith("http://127.0.0.1:") and receiver.url.endswith(WEBHOOK_PATH)
    assert SECRET not in repr(receiver) and SECRET.removeprefix("whsec_") not in repr(receiver)


@pytest.mark.anyio
async def test_a_delivery_before_the_wait_is_kept_then_forgotten(
    receiver: WebhookReceiver, http: httpx.Client
) -> None:
    assert deliver(http, receiver, "t1") == 204
    assert await receiver.wait("t1", 5) == "success"
    assert await receiver.wait("t1", 0) is None
    assert receiver.counters() == {"deliveries": 1, "verified": 1, "rejected": 0, "replays": 0,
                                   "ignored": 0}


@pytest.mark.anyio
async def test_a_waiting_task_wakes_when_its_delivery_arrives(
    receiver: WebhookReceiver, http: httpx.Client
) -> None:
    waiting = asyncio.ensure_future(receiver.wait("t2", 10))
    await asyncio.sleep(0)
    assert await asyncio.to_thread(deliver, http, receiver, "t-other") == 204
    assert not waiting.done()
    assert await asyncio.to_thread(deliver, http, receiver, "t2", "error") == 204
    assert await waiting == "error"
    assert await receiver.wait("t-other", 0) == "success"


@pytest.mark.anyio
async def test_a_timed_out_wait_leaves_no_stale_waiter(
    receiver: WebhookReceiver, http: httpx.Client
) -> None:
    assert await receiver.wait("t3", 0.05) is None
    assert deliver(http, receiver, "t3") == 204
    assert await receiver.wait("t3", 0) == "success"


@pytest.mark.anyio
async def test_a_wait_cancelled_as_its_delivery_lands_loses_nothing(
    receiver: WebhookReceiver, http: httpx.Client
) -> None:
    waiting = asyncio.ensure_future(receiver.wait("t7", 10))
    await asyncio.sleep(0)
    assert deliver(http, receiver, "t7") == 204  # blocks this loop: the wake-up is still queued
    waiting.cancel()
    try:
        got = [await waiting]
    except asyncio.CancelledError:
        got = []
    got.append(await receiver.wait("t7", 0))
    assert [s for s in got if s is not None] == ["success"]


def test_waits_from_other_threads_and_event_loops(
    receiver: WebhookReceiver, http: httpx.Client
) -> None:
    results: dict[str, str | None] = {}
    started = threading.Barrier(4)

    def waiter(task_id: str) -> None:
        async def main() -> None:
            started.wait()
            results[task_id] = await receiver.wait(task_id, 10)
        asyncio.run(main())

    threads = [threading.Thread(target=waiter, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    started.wait()
    for i, status in enumerate(["success", "error", "success"]):
        assert deliver(http, receiver, f"w{i}", status) == 204
    for t in threads:
        t.join(timeout=10)
    assert results == {"w0": "success", "w1": "error", "w2": "success"}


@pytest.mark.anyio
async def test_a_replay_is_answered_200_and_not_acted_on(
    receiver: WebhookReceiver, http: httpx.Client
) -> None:
    assert deliver(http, receiver, "t4", msg_id="msg_t4:1") == 204
    assert await receiver.wait("t4", 1) == "success"
    # the vendor's retry: same id, fresh timestamp and signature
    assert deliver(http, receiver, "t4", msg_id="msg_t4:1") == 200
    assert await receiver.wait("t4", 0) is None
    counts = receiver.counters()
    assert (counts["verified"], counts["replays"]) == (2, 1)


@pytest.mark.anyio
async def test_invalid_deliveries_get_400_and_record_nothing(
    receiver: WebhookReceiver, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert deliver(http, receiver, "t5", secret=OTHER) == 400
    body = payload("t5")
    assert http.post(receiver.url, content=body, headers={"webhook-id": "x"}).status_code == 400
    stale = signed(body, msg_id="msg_t5:9", ts=int(time.time()) - 3600)
    assert http.post(receiver.url, content=body, headers=stale).status_code == 400
    assert await receiver.wait("t5", 0) is None
    assert receiver.counters() == {"deliveries": 3, "verified": 0, "rejected": 3, "replays": 0,
                                   "ignored": 0}
    # a rejected id is not remembered: the genuine delivery still counts
    assert deliver(http, receiver, "t5") == 204
    logged = [r.getMessage() for r in caplog.records if r.name == "backdrop.pipeline.webhooks"]
    assert logged == ["webhook rejected: no valid v1 signature", "webhook rejected: missing header "
                      "webhook-timestamp", "webhook rejected: timestamp too old"]
    assert "v1," not in caplog.text and SECRET.removeprefix("whsec_") not in caplog.text


def test_wrong_path_method_or_size(receiver: WebhookReceiver, http: httpx.Client) -> None:
    body = payload()
    base = receiver.url.removesuffix(WEBHOOK_PATH)
    assert http.post(base + "/other", content=body, headers=signed(body)).status_code == 404
    assert http.get(receiver.url).status_code == 405
    assert http.post(receiver.url, content=b"x" * 70_000).status_code == 413
    assert receiver.counters()["deliveries"] == 0


@pytest.mark.anyio
async def test_a_non_terminal_status_is_acknowledged_and_ignored(
    receiver: WebhookReceiver, http: httpx.Client
) -> None:
    assert deliver(http, receiver, "t6", "running") == 204
    assert await receiver.wait("t6", 0) is None
    assert receiver.counters()["ignored"] == 1


@pytest.mark.anyio
async def test_uncollected_statuses_are_capped(http: httpx.Client) -> None:
    with WebhookReceiver(SECRET, max_pending=2) as r:
        for task_id in ("a", "b", "c"):
            assert deliver(http, r, task_id) == 204
        assert [await r.wait(t, 0) for t in ("a", "b", "c")] == [None, "success", "success"]


def test_from_settings() -> None:
    assert WebhookReceiver.from_settings(BackdropSettings()) is None
    with pytest.raises(ConfigError, match="BACKDROP_WEBHOOK_SECRET"):
        WebhookReceiver.from_settings(BackdropSettings(webhook_listen="127.0.0.1:0"))
    built = WebhookReceiver.from_settings(
        BackdropSettings(webhook_listen="127.0.0.1:0", webhook_secret=SECRET))
    assert built is not None and built.listen == "127.0.0.1:0"
    with pytest.raises(ConfigError, match="host:port"):
        WebhookReceiver(SECRET, listen="localhost")


# ---- end to end against the sandbox ------------------------------------------------------------


@dataclass(eq=False)
class AckFailingReceiver(WebhookReceiver):
    """A receiver whose first `ack_failures` fresh deliveries are acted on, then answered 500 (a lost answer)."""

    ack_failures: int = 0

    def _handle(self, headers: Mapping[str, str], body: bytes) -> int:
        status = super()._handle(headers, body)
        if status == 204 and self.ack_failures > 0:  # 204: verified, fresh, acted on
            self.ack_failures -= 1
            return 500
        return status


async def create_task(sandbox: SandboxHandle, tmp_path: Path, prompt: str) -> str:
    """Upload a small picture and create a task with the real client; returns its task_id."""
    src = save_picture(tmp_path / "product.jpg", 96, 64, (200, 40, 40))
    settings = BackdropSettings(api_url=sandbox.base_url, api_key=sandbox.api_key, feature="bg-replace")
    async with BackdropClient(settings) as client:
        file_id = await client.upload_file(src, content_type="image/jpeg")
        return (await client.create_task(src_file_id=file_id, prompt=prompt)).task_id


def polls_of(sandbox: SandboxHandle, task_id: str) -> list[dict[str, Any]]:
    return [j for j in sandbox.journal() if j["method"] == "GET" and task_id in j["path"]]


def attempts(sandbox: SandboxHandle, task_id: str) -> list[int | None]:
    (record,) = [w for w in sandbox.webhooks() if w["task_id"] == task_id]
    return [a["status"] for a in record["attempts"]]


@pytest.mark.anyio
@pytest.mark.parametrize(("prompt", "status"), [
    ("on a marble counter, soft light", "success"),
    ("on a beach [[sandbox:error=error_inference]]", "error"),
])
async def test_end_to_end_the_sandboxs_delivery_ends_the_wait_without_a_poll(
    sandbox: SandboxHandle, tmp_path: Path, prompt: str, status: str
) -> None:
    with WebhookReceiver(sandbox.webhook_secret) as r:
        sandbox.configure(webhook_urls=[r.url], duration_mode="fixed", duration_median_s=0.3)
        task_id = await create_task(sandbox, tmp_path, prompt)
        assert await r.wait(task_id, 10) == status
        assert r.counters() == {"deliveries": 1, "verified": 1, "rejected": 0, "replays": 0,
                                "ignored": 0}
    assert polls_of(sandbox, task_id) == []
    assert [j["method"] for j in sandbox.journal() if j["path"].startswith("/s2s/v2.0/task/")] == [
        "POST"]
    assert attempts(sandbox, task_id) == [204]


@pytest.mark.anyio
async def test_end_to_end_the_retry_after_a_failed_answer_is_deduplicated(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with AckFailingReceiver(sandbox.webhook_secret, ack_failures=1) as r:
        sandbox.configure(webhook_urls=[r.url], duration_mode="fixed", duration_median_s=0.3,
                          webhook_backoff_s=0.05)
        task_id = await create_task(sandbox, tmp_path, "in a forest")
        assert await r.wait(task_id, 10) == "success"
        await until(lambda: [w for w in sandbox.webhooks() if w["delivered"]])
        assert attempts(sandbox, task_id) == [500, 200]
        assert r.counters() == {"deliveries": 2, "verified": 2, "rejected": 0, "replays": 1,
                                "ignored": 0}
        assert await r.wait(task_id, 0) is None  # the retry was not recorded a second time
    assert polls_of(sandbox, task_id) == []


@pytest.mark.anyio
async def test_end_to_end_deliveries_signed_with_another_secret_are_refused(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with WebhookReceiver(OTHER) as r:
        sandbox.configure(webhook_urls=[r.url], webhook_max_attempts=2, webhook_backoff_s=0.05)
        task_id = await create_task(sandbox, tmp_path, "on snow")
        await until(lambda: len(attempts(sandbox, task_id)) == 2 if sandbox.webhooks() else None)
        assert attempts(sandbox, task_id) == [400, 400]
        assert await r.wait(task_id, 0) is None
        assert r.counters()["rejected"] == 2
