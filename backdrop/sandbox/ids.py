"""Identifiers and signatures: request ids, file and task ids, signed storage URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
import threading
import time

_EPOCH_MS = 1_288_834_974_657  # the classic snowflake epoch; only the shape matters
_seq = itertools.count()
_seq_lock = threading.Lock()


def request_id() -> str:
    """A snowflake-like decimal id, as in the vendor's undocumented `x-request-id` header."""
    with _seq_lock:
        seq = next(_seq) & 0xFFF
    ms = int(time.time() * 1000) - _EPOCH_MS
    return str((ms << 22) | (7 << 12) | seq)


def file_id() -> str:
    """44-char standard base64 (may hold `+`, `/` and `=`), like the vendor's examples."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def task_id() -> str:
    """64-char URL-safe id."""
    return base64.urlsafe_b64encode(secrets.token_bytes(48)).decode()


def token() -> str:
    """An opaque storage token naming one upload slot or one result."""
    return secrets.token_urlsafe(24)


def big_id() -> int:
    """Credit and history ids exceed 2**53 in the real API; ours do too, to catch float parsing."""
    return (1 << 53) + secrets.randbelow(1 << 58)


def sign(secret: str, method: str, path: str, expires: str) -> str:
    msg = f"{method.upper()}\n{path}\n{expires}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signed_query(secret: str, method: str, path: str, ttl_real_s: float) -> str:
    """`expires=<unix seconds, ms precision>&signature=<hex HMAC>` for `path`."""
    expires = f"{time.time() + ttl_real_s:.3f}"
    return f"expires={expires}&signature={sign(secret, method, path, expires)}"


def check_signature(
    secret: str, method: str, path: str, expires: str | None, signature: str | None
) -> str | None:
    """None when valid, else the S3-style error code (`SignatureDoesNotMatch` or `AccessDenied`)."""
    if not expires or not signature:
        return "AccessDenied"
    if not hmac.compare_digest(sign(secret, method, path, expires), signature):
        return "SignatureDoesNotMatch"
    try:
        if float(expires) < time.time():
            return "AccessDenied"
    except ValueError:
        return "AccessDenied"
    return None
