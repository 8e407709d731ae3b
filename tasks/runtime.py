"""Where tasks get their settings and client: built at call time, never passed as task arguments.

Clients are kept per (thread, event loop, settings) so that concurrent task runs on one loop share one
connection pool, while Prefect's worker threads (each with its own loop) get their own. The rate limiter is
shared process-wide by the client package, whatever the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from urllib.parse import urlparse

from pydantic import SecretStr

from backdrop.client import BackdropClient
from backdrop.errors import ConfigError
from backdrop.settings import BackdropSettings

__all__ = ["settings_for", "client_for", "close_clients", "environment_id"]

_lock = threading.Lock()
_clients: dict[tuple[int, int, str], BackdropClient] = {}
_secret_cache: dict[str, str] = {}


def _key_from_block(name: str) -> str:
    if name not in _secret_cache:
        from prefect.blocks.system import Secret

        try:
            _secret_cache[name] = str(Secret.load(name).get())
        except ValueError as exc:
            raise ConfigError(f"cannot load the Prefect Secret block '{name}'") from exc
    return _secret_cache[name]


def settings_for(feature: str | None = None) -> BackdropSettings:
    """Settings from the environment, the flow's feature override, and the key (env or Secret block)."""
    settings = BackdropSettings()
    update: dict[str, object] = {}
    if feature:
        update["feature"] = feature
    if settings.api_key is None and settings.api_key_block:
        update["api_key"] = SecretStr(_key_from_block(settings.api_key_block))
    if update:
        settings = BackdropSettings(**{**settings.model_dump(), **update})
    if settings.api_key is None:
        raise ConfigError(
            "no API key: set BACKDROP_API_KEY, or BACKDROP_API_KEY_BLOCK to a Prefect Secret block name"
        )
    return settings


def environment_id(settings: BackdropSettings) -> str:
    """A short, non-reversible id of (API host, key, feature): cache keys differ per account and server.

    The port is left out on purpose: a sandbox restarted on another free port is the same account.
    """
    host = urlparse(settings.api_url).hostname or settings.api_url
    raw = f"{host}\n{settings.api_key_value()}\n{settings.feature}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def client_for(settings: BackdropSettings) -> BackdropClient:
    loop = asyncio.get_running_loop()
    key = (threading.get_ident(), id(loop), environment_id(settings) + settings.model_dump_json())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = BackdropClient(settings)
            _clients[key] = client
        return client


async def close_clients() -> None:
    """Close the clients that belong to the running loop (call at the end of a flow)."""
    loop_id = id(asyncio.get_running_loop())
    with _lock:
        mine = [k for k in _clients if k[1] == loop_id]
        clients = [_clients.pop(k) for k in mine]
    for client in clients:
        await client.aclose()
