"""Where tasks get their settings, and the ids derived from them: built at call time, never passed as task
arguments. Clients, the poll planner and the webhook receiver belong to the run: see `tasks/resources.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping

from pydantic import SecretStr

from backdrop.errors import ConfigError
from backdrop.redact import install_log_filter, register_secret
from backdrop.settings import BackdropSettings, canonical_service

__all__ = ["settings_for", "load_settings", "environment_id", "key_id"]


def _key_from_block(name: str, cache: MutableMapping[str, str]) -> str:
    if name not in cache:
        from prefect.blocks.system import Secret

        try:
            cache[name] = str(Secret.load(name).get())
        except ValueError as exc:
            raise ConfigError(f"cannot load the Prefect Secret block '{name}'") from exc
    return cache[name]


def load_settings(feature: str | None, secrets: MutableMapping[str, str]) -> BackdropSettings:
    """Settings from the environment, the feature override, and the key (env, or a Secret block kept in
    `secrets`, the run's cache)."""
    settings = BackdropSettings()
    update: dict[str, object] = {}
    if feature:
        update["feature"] = feature
    if settings.api_key is None and settings.api_key_block:
        update["api_key"] = SecretStr(_key_from_block(settings.api_key_block, secrets))
    if update:
        settings = BackdropSettings(**{**settings.model_dump(), **update})
    if settings.api_key is None:
        raise ConfigError(
            "no API key: set BACKDROP_API_KEY, or BACKDROP_API_KEY_BLOCK to a Prefect Secret block name"
        )
    register_secret(settings.api_key_value())  # a key from a block is masked like one from the environment
    register_secret(settings.webhook_secret.get_secret_value() if settings.webhook_secret else None)
    install_log_filter()
    return settings


def settings_for(feature: str | None = None) -> BackdropSettings:
    """Settings for the running flow (its Secret block read once per run), or, outside a run, read afresh."""
    from tasks.resources import current_resources

    res = current_resources()
    return res.settings(feature) if res is not None else load_settings(feature, {})


def environment_id(settings: BackdropSettings) -> str:
    """A short id of (account, server, feature): what was paid for is shared by every key of one account.

    The account is `BACKDROP_ACCOUNT` (one name per vendor account sharing a ledger); the server is
    `canonical_service(api_url)`: the vendor's host aliases are one server, a sandbox is `loopback:<port>` (one
    restarted on another port is a new server that knows none of the old one's tasks). Neither the key (rotating
    it must not pay for everything again) nor the URL's spelling counts.
    """
    raw = f"{settings.account}\n{canonical_service(settings.api_url)}\n{settings.feature}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def key_id(settings: BackdropSettings) -> str | None:
    """A short, non-reversible id of the API key itself (None without a key), for the ledger's `key_id`."""
    value = settings.api_key_value()
    if not value:
        return None
    return hashlib.sha256(f"backdrop-key-id\n{value}".encode()).hexdigest()[:16]
