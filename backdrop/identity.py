"""Backdrop's identities: the short, non-reversible ids it derives from the settings (account, server, key).

Every value here is persisted or shared between processes: `environment_id` and `key_id` in the ledger's rows,
`limiter_key_id` in the database limiter's table, `legacy_environment_id` in ledgers written before issue 11.
Changing how any of them is computed would make a run miss what it already paid for (and pay again) or split one
API key's limit in two: `tests/pipeline/test_identity.py` pins each to a literal. Prefect-free; imports only
the settings.
"""

from __future__ import annotations

import hashlib

from backdrop.settings import BackdropSettings, canonical_service

__all__ = ["environment_id", "key_id", "legacy_environment_id", "limiter_key_id", "process_limiter_key"]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def environment_id(settings: BackdropSettings) -> str:
    """A short id of (account, server, feature): what was paid for is shared by every key of one account.

    The account is `BACKDROP_ACCOUNT` (one name per vendor account sharing a ledger); the server is
    `canonical_service(api_url)`: the vendor's host aliases are one server, a sandbox is `loopback:<port>` (one
    restarted on another port is a new server that knows none of the old one's tasks). Neither the key (rotating
    it must not pay for everything again) nor the URL's spelling counts.
    """
    return _sha256(f"{settings.account}\n{canonical_service(settings.api_url)}\n{settings.feature}")[:16]


def key_id(settings: BackdropSettings) -> str | None:
    """A short, non-reversible id of the API key itself (None without a key), for the ledger's `key_id`."""
    value = settings.api_key_value()
    if not value:
        return None
    return _sha256(f"backdrop-key-id\n{value}")[:16]


def legacy_environment_id(settings: BackdropSettings) -> str:
    """The account id every ledger row carried before: the URL as spelled, the key itself, the feature."""
    return _sha256(f"{settings.api_url.rstrip('/')}\n{settings.api_key_value()}\n{settings.feature}")[:16]


def limiter_key_id(settings: BackdropSettings) -> str:
    """A stable id for (server, API key) that does not reveal the key, the database limiter's `key_id`: the
    vendor counts per key, and the server's host aliases are one server (`canonical_service`), so they share one
    limit."""
    return _sha256(f"{canonical_service(settings.api_url)}\n{settings.api_key_value() or ''}")[:32]


def process_limiter_key(settings: BackdropSettings) -> tuple[str, str]:
    """(server, key digest): which in-process limiter a client shares (with the limits, in
    `backdrop.pacing.memory.shared_limiter`). Host aliases are one server, so one limit."""
    return canonical_service(settings.api_url), _sha256(settings.api_key_value() or "")[:16]
