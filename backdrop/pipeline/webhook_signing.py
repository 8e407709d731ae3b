"""Standard Webhooks verification: whether one delivery is authentic, fresh, a task notification, and not a replay.

`verify` checks one delivery (HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed
with the base64 secret after `whsec_`, padded or not; any of several space-separated `v1,<b64>` signatures may
match; the timestamp must lie within ±tolerance of now). `ReplayGuard` remembers ids already acted
on: the vendor retries with the same `webhook-id`. The secret and the signatures are never put in an
error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backdrop.errors import ConfigError, WebhookRejected

__all__ = ["ReplayGuard", "WebhookEvent", "decode_secret", "verify", "verify_with_key"]

_TIMESTAMP = re.compile(r"^[0-9]{1,15}$")


@dataclass(frozen=True)
class WebhookEvent:
    """One verified delivery: its `webhook-id`, signed timestamp and the task's terminal state."""

    id: str
    timestamp: int
    task_id: str
    task_status: str
    created_at: int


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (prefix optional, `=` padding optional); ConfigError if unusable.

    The vendor's only published example secret (quoted in tests/pipeline/test_webhook_secrets.py) is unpadded,
    so the missing `=` are restored before a strict decode; anything else that is not base64 is refused.
    """
    text = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("the webhook secret is not whsec_<base64>") from None
    if not key:
        raise ConfigError("the webhook secret is empty")
    return key


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = 300,
           now: float | None = None) -> WebhookEvent:
    """Check one delivery per the Standard Webhooks spec and parse it; raise WebhookRejected."""
    return verify_with_key(decode_secret(secret), headers, body, tolerance_s, now)


def verify_with_key(key: bytes, headers: Mapping[str, str], body: bytes, tolerance_s: float,
                    now: float | None) -> WebhookEvent:
    """`verify` with the secret already decoded (the receiver decodes it once)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, sigs = (lower.get(h, "").strip()
                           for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", stamp),
                        ("webhook-signature", sigs)):
        if not value:
            raise WebhookRejected(f"missing header {name}")
    if not _TIMESTAMP.match(stamp):
        raise WebhookRejected("webhook-timestamp is not Unix seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise WebhookRejected("timestamp too old")
    if timestamp > current + tolerance_s:
        raise WebhookRejected("timestamp too far in the future")
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    matched = False
    for entry in sigs.split():
        version, _, sig = entry.partition(",")
        # every entry is compared, in constant time each, so the answer time says nothing useful
        matched |= version == "v1" and hmac.compare_digest(expected, sig.encode("utf-8", "replace"))
    if not matched:
        raise WebhookRejected("no valid v1 signature")
    return _parse(msg_id, timestamp, body)


def _parse(msg_id: str, timestamp: int, body: bytes) -> WebhookEvent:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected("body is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    created = payload.get("created_at") if isinstance(payload, dict) else None
    task_id = data.get("task_id") if isinstance(data, dict) else None
    status = data.get("task_status") if isinstance(data, dict) else None
    if not (isinstance(task_id, str) and task_id and isinstance(status, str) and status):
        raise WebhookRejected("body lacks data.task_id or data.task_status")
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise WebhookRejected("body lacks a numeric created_at")
    return WebhookEvent(msg_id, timestamp, task_id, status, int(created))


class ReplayGuard:
    """Ids acted on within `ttl_s` (at most `max_ids`, oldest forgotten first); thread-safe.

    Keep `ttl_s` longer than the vendor's retry span, not only the signature tolerance: a retry is
    re-signed with a fresh timestamp, so only this memory stops it being acted on twice.
    """

    def __init__(self, ttl_s: float = 86400.0, *, max_ids: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_ids = max_ids
        self._clock = clock
        self._expires: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, msg_id: str) -> bool:
        """True the first time `msg_id` is seen (act on it), False for a replay."""
        now = self._clock()
        with self._lock:
            while self._expires and next(iter(self._expires.values())) <= now:
                self._expires.popitem(last=False)
            if msg_id in self._expires:
                return False
            self._expires[msg_id] = now + self.ttl_s
            while len(self._expires) > self.max_ids:
                self._expires.popitem(last=False)
            return True

    def __len__(self) -> int:
        return len(self._expires)
