"""Webhook secrets with or without base64 padding, on both sides: the receiver (webhook_signing.decode_secret) and
the sandbox's deliverer (sandbox.webhooks), down to the vendor's published example secret, which is unpadded."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from backdrop.client import BackdropClient
from backdrop.errors import ConfigError, WebhookRejected
from backdrop.pipeline.webhook_signing import decode_secret, verify
from backdrop.pipeline.webhooks import WebhookReceiver
from backdrop.sandbox import SandboxServer, SandboxSettings
from backdrop.sandbox.webhooks import Deliverer, secret_key, signature
from backdrop.settings import BackdropSettings
from tests.support.sandbox import TLS

#: the example secret on the vendor's webhook page (contract audit D8b): 39 base64 characters, no `=`
PUBLISHED = "whsec_NDQzMzYxNzkzMzE0NjYyNDM6OTIxOTcwNDIxODQ"
NOW = 1_761_112_900


def _body(task_id: str = "task-1", status: str = "success") -> bytes:
    return json.dumps({"created_at": NOW, "data": {"task_id": task_id, "task_status": status}},
                      separators=(",", ":")).encode()


def _headers(secret: str, body: bytes, msg_id: str = "msg_task-1:1", ts: int = NOW) -> dict[str, str]:
    """Headers signed by the sandbox's deliverer code."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": signature(secret, msg_id, ts, body)}


def test_the_published_example_secret_decodes_to_its_documented_key_on_both_sides() -> None:
    assert len(PUBLISHED.removeprefix("whsec_")) % 4 == 3  # really unpadded
    assert decode_secret(PUBLISHED) == b"44336179331466243:92197042184"
    assert secret_key(PUBLISHED) == b"44336179331466243:92197042184"


def test_the_published_example_secret_signs_with_the_sandbox_and_verifies_with_the_receiver() -> None:
    body = _body("t-published")
    event = verify(PUBLISHED, _headers(PUBLISHED, body), body, now=NOW)
    assert (event.task_id, event.task_status) == ("t-published", "success")
    # and the padded spelling of the same secret is the same key
    padded = PUBLISHED + "="
    assert verify(padded, _headers(PUBLISHED, body), body, now=NOW) == event
    assert verify(PUBLISHED, _headers(padded, body), body, now=NOW) == event


@given(st.binary(min_size=1, max_size=64), st.binary(max_size=256))
def test_padded_and_unpadded_encodings_verify_the_same_signatures(raw: bytes, payload: bytes) -> None:
    padded = "whsec_" + base64.b64encode(raw).decode()
    unpadded = padded.rstrip("=")
    assert decode_secret(padded) == decode_secret(unpadded) == secret_key(unpadded) == raw
    body = _body() + payload  # any bytes after the JSON: the signature covers the raw body
    for signer in (padded, unpadded):
        sig = signature(signer, "msg_x:1", NOW, body)
        assert signature(padded if signer == unpadded else unpadded, "msg_x:1", NOW, body) == sig
    headers = _headers(unpadded, _body())
    for receiver_secret in (padded, unpadded, padded.removeprefix("whsec_"), unpadded.removeprefix("whsec_")):
        assert verify(receiver_secret, headers, _body(), now=NOW).task_id == "task-1"


@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))
def test_a_secret_that_differs_still_fails_whatever_its_padding(raw: bytes, other: bytes) -> None:
    if raw == other:
        return
    body = _body()
    headers = _headers("whsec_" + base64.b64encode(other).decode().rstrip("="), body)
    with pytest.raises(WebhookRejected, match="no valid v1 signature"):
        verify("whsec_" + base64.b64encode(raw).decode().rstrip("="), headers, body, now=NOW)


@pytest.mark.parametrize("secret", [
    "whsec_not*base64", "whsec_", "", "whsec_A", "whsec_abcde", "whsec_NDQz MzYx", "whsec_NDQz-_YxNzkz",
    "whsec_ab=c",
])
def test_a_secret_that_is_not_base64_is_still_refused_clearly(secret: str) -> None:
    with pytest.raises(ConfigError, match="^the webhook secret is (not whsec_<base64>|empty)$") as info:
        decode_secret(secret)
    body = secret.removeprefix("whsec_")
    assert not body or body not in str(info.value)
    with pytest.raises(ValueError, match="webhook secret is") as sandbox_info:
        secret_key(secret)
    assert not body or body not in str(sandbox_info.value)


def test_the_sandbox_refuses_an_unusable_secret_when_it_starts() -> None:
    with pytest.raises(ValueError, match="not whsec_<base64>"):
        Deliverer("whsec_not*base64")
    Deliverer(PUBLISHED)  # accepted


def test_a_receiver_and_settings_take_the_published_secret() -> None:
    built = WebhookReceiver.from_settings(BackdropSettings(webhook_listen="127.0.0.1:0", webhook_secret=PUBLISHED))
    assert built is not None


@pytest.mark.anyio
async def test_end_to_end_over_http_with_the_published_secret(tmp_path: Path) -> None:
    """A sandbox whose webhook secret is the vendor's example delivers; Backdrop's receiver verifies it."""
    settings = SandboxSettings(webhook_secret=PUBLISHED, allow_private_fetch=True)
    key = f"sandbox-{uuid.uuid4().hex}"
    with SandboxServer(settings) as server, WebhookReceiver(PUBLISHED) as receiver:
        with httpx.Client(base_url=server.base_url, trust_env=False, verify=TLS,
                          headers={"Authorization": f"Bearer {key}"}) as admin:
            admin.patch("/_sandbox/config", json={
                "webhook_urls": [receiver.url], "duration_mode": "fixed", "duration_median_s": 0.2,
                "rate_limit_per_ip": False}).raise_for_status()
            src = tmp_path / "product.jpg"
            buf = io.BytesIO()
            Image.new("RGB", (64, 48), (20, 120, 200)).save(buf, "JPEG")
            src.write_bytes(buf.getvalue())
            settings = BackdropSettings(api_url=server.base_url, api_key=key, feature="bg-replace")
            async with BackdropClient(settings) as client:
                file_id = await client.upload_file(src, content_type="image/jpeg")
                task_id = (await client.create_task(src_file_id=file_id, prompt="on marble")).task_id
            assert await receiver.wait(task_id, 10) == "success"
            deadline = time.monotonic() + 10
            while not (done := [w for w in admin.get("/_sandbox/webhooks").json() if w["delivered"]]):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert [a["status"] for a in done[0]["attempts"]] == [204]
            assert receiver.counters()["verified"] == 1 and receiver.counters()["rejected"] == 0
