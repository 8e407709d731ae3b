"""Webhooks: Standard Webhooks signatures on terminal states, retries with the same id."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx

from tests.support.loopback import LoopbackHTTP
from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, create
from tests.support.waiting import wait_until


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check, written from the Standard Webhooks spec."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig == f"v1,{expected}" for sig in headers["webhook-signature"].split())


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_success_is_posted_signed(api: httpx.Client, upload: Upload, sandbox: SandboxHandle,
                                  loopback: LoopbackHTTP) -> None:
    assert sandbox.webhook_secret.startswith("whsec_")
    sandbox.configure(webhook_urls=[loopback.url("/hook")])
    task_id = create(api, src_file_id=upload())
    (post,) = wait_until(lambda: loopback.posts)
    headers = _lower(post["headers"])
    body = json.loads(post["body"])
    assert body == {"created_at": body["created_at"],
                    "data": {"task_id": task_id, "task_status": "success"}}
    assert headers["webhook-id"] == f"msg_{task_id}:{body['created_at']}"
    assert headers["webhook-timestamp"].isdigit()
    assert _verify(sandbox.webhook_secret, headers, post["body"])
    assert not _verify("whsec_" + base64.b64encode(b"wrong-secret").decode(), headers, post["body"])
    (delivery,) = wait_until(lambda: [d for d in sandbox.webhooks() if d["delivered"]])
    assert [a["status"] for a in delivery["attempts"]] == [200]


def test_error_is_posted_too(api: httpx.Client, sandbox: SandboxHandle,
                             loopback: LoopbackHTTP) -> None:
    sandbox.configure(webhook_urls=[loopback.url("/a"), loopback.url("/b")])
    task_id = create(api, src_file_url="http://127.0.0.1:9/none.jpg")
    posts = wait_until(lambda: loopback.posts if len(loopback.posts) == 2 else None)
    assert sorted(p["path"] for p in posts) == ["/a", "/b"]
    assert {json.loads(p["body"])["data"]["task_status"] for p in posts} == {"error"}
    assert {json.loads(p["body"])["data"]["task_id"] for p in posts} == {task_id}


def test_failed_delivery_is_retried_with_the_same_id(
    api: httpx.Client, upload: Upload, sandbox: SandboxHandle, loopback: LoopbackHTTP
) -> None:
    loopback.post_statuses = [500]
    # backoff 1 vendor second at 100x: 10 ms
    sandbox.configure(webhook_urls=[loopback.url("/hook")], webhook_backoff_s=1, time_scale=100)
    create(api, src_file_id=upload())
    first, second = wait_until(lambda: loopback.posts if len(loopback.posts) == 2 else None)
    ids = {_lower(p["headers"])["webhook-id"] for p in (first, second)}
    assert len(ids) == 1
    assert first["body"] == second["body"]
    assert _verify(sandbox.webhook_secret, _lower(second["headers"]), second["body"])
    (delivery,) = wait_until(lambda: [d for d in sandbox.webhooks() if d["delivered"]])
    assert [a["status"] for a in delivery["attempts"]] == [500, 200]


def test_delivery_gives_up_after_max_attempts(
    api: httpx.Client, upload: Upload, sandbox: SandboxHandle
) -> None:
    sandbox.configure(webhook_urls=["http://127.0.0.1:9/closed"], webhook_backoff_s=1,
                      time_scale=100, webhook_max_attempts=3)
    create(api, src_file_id=upload())
    (delivery,) = wait_until(lambda: [d for d in sandbox.webhooks() if len(d["attempts"]) == 3])
    assert delivery["delivered"] is False
    assert all(a["error"] == "ConnectError" for a in delivery["attempts"])
