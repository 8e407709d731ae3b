"""Where tasks get their settings: built at call time, never passed as task arguments. Clients, the poll planner
and the webhook receiver belong to the run: see `tasks/resources.py`; the ids derived from settings are in
`backdrop/identity.py`.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from pydantic import SecretStr

from backdrop.errors import ConfigError
from backdrop.redact import install_log_filter, register_secret
from backdrop.settings import BackdropSettings

__all__ = ["settings_for", "load_settings"]


def _key_from_block(name: str, cache: MutableMapping[str, str]) -> str:
    if name not in cache:
        from prefect.blocks.system import Secret

        try:
            block: Any = Secret.load(name)  # sync_compatible: a Secret when called from sync code, as here
            cache[name] = str(block.get())
        except ValueError as exc:
            raise ConfigError(f"cannot load the Prefect Secret block '{name}'") from exc
    return cache[name]


def load_settings(feature: str | None, secrets: MutableMapping[str, str], *,
                  require_key: bool = True) -> BackdropSettings:
    """Settings from the environment, the feature override, and the key (env, or a Secret block kept in
    `secrets`, the run's cache). Without a key: ConfigError, unless `require_key` is False (the cost report
    answers from the ledger alone)."""
    settings = BackdropSettings()
    update: dict[str, object] = {}
    if feature:
        update["feature"] = feature
    if settings.api_key is None and settings.api_key_block:
        update["api_key"] = SecretStr(_key_from_block(settings.api_key_block, secrets))
    if update:
        settings = BackdropSettings(**{**settings.model_dump(), **update})
    if settings.api_key is None and require_key:
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

