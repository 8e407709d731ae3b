"""Standard Webhooks deliveries on each terminal task state, with retries and a journal."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from .engine import Finished
from .netguard import Blocked, check_target
from .state import KeyState


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret, `=` padding optional (the vendor's published example has none).

    ValueError (naming no part of the secret) when it is not base64 or is empty.
    """
    text = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the sandbox's webhook secret is not whsec_<base64>") from None
    if not key:
        raise ValueError("the sandbox's webhook secret is empty")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}`, keyed with the decoded secret."""
    key = secret_key(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class Deliverer:
    """Owns the delivery coroutines; lives on the server's event loop."""

    def __init__(self, secret: str) -> None:
        secret_key(secret)  # an unusable secret fails the sandbox's start, not every delivery
        self._secret = secret
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False)
        return self._client

    def notify(self, st: KeyState, done: Finished) -> None:
        """Schedule one delivery per configured URL (call on the event loop)."""
        for url in st.config.webhook_urls:
            job = asyncio.ensure_future(self._deliver(st, done, url))
            self._tasks.add(job)
            job.add_done_callback(self._tasks.discard)

    async def _deliver(self, st: KeyState, done: Finished, url: str) -> None:
        body = json.dumps(
            {"created_at": done.at, "data": {"task_id": done.task_id, "task_status": done.status}},
            separators=(",", ":"),
        ).encode()
        msg_id = f"msg_{done.task_id}:{done.at}"
        record: dict[str, Any] = {
            "webhook_id": msg_id, "url": url, "task_id": done.task_id,
            "task_status": done.status, "attempts": [], "delivered": False,
        }
        with st.lock:
            st.webhooks.append(record)
        cfg = st.config
        try:  # a key's holder chooses the URLs: never a POST to this network unless the sandbox allows it
            await asyncio.to_thread(check_target, url, allow_private=cfg.allow_private_fetch)
        except Blocked as exc:
            record["attempts"].append({"time": time.time(), "status": None, "error": f"refused: {exc}"})
            return
        for attempt in range(cfg.webhook_max_attempts):
            if attempt:
                await asyncio.sleep(cfg.real(cfg.webhook_backoff_s * 2 ** (attempt - 1)))
            ts = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": signature(self._secret, msg_id, ts, body),
            }
            outcome: dict[str, Any] = {"time": time.time(), "status": None, "error": None}
            try:
                resp = await self._http().post(url, content=body, headers=headers,
                                               timeout=cfg.webhook_timeout_s)
                outcome["status"] = resp.status_code
            except httpx.HTTPError as exc:
                outcome["error"] = type(exc).__name__
            record["attempts"].append(outcome)
            if outcome["status"] is not None and 200 <= outcome["status"] < 300:
                record["delivered"] = True
                return

    async def aclose(self) -> None:
        for job in list(self._tasks):
            job.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
