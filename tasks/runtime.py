"""Where tasks get their settings and client: built at call time, never passed as task arguments.

Clients are kept per (thread, event loop, settings) so that concurrent task runs on one loop share one
connection pool, while Prefect's worker threads (each with its own loop) get their own. The rate limiter is
shared process-wide by the client package, whatever the loop.
"""

from __future__ import annotations

import asyncio
import threading

from pydantic import SecretStr

from backdrop.client import BackdropClient
from backdrop.errors import ConfigError
from backdrop.identity import environment_id, key_id  # re-exported: the flows and the CLI import them here
from backdrop.pacing import limiter_for
from backdrop.pipeline.polling import PollPlanner
from backdrop.pipeline.webhooks import WebhookReceiver
from backdrop.redact import install_log_filter, register_secret
from backdrop.settings import BackdropSettings

__all__ = ["settings_for", "client_for", "close_clients", "environment_id", "key_id", "planner_for", "client_stats",
           "set_receiver", "receiver"]

_lock = threading.Lock()
_clients: dict[tuple[int, int, str], BackdropClient] = {}
_secret_cache: dict[str, str] = {}
_planners: dict[str, PollPlanner] = {}


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
    register_secret(settings.api_key_value())  # a key from a block is masked like one from the environment
    register_secret(settings.webhook_secret.get_secret_value() if settings.webhook_secret else None)
    install_log_filter()
    return settings


def client_for(settings: BackdropSettings) -> BackdropClient:
    loop = asyncio.get_running_loop()
    # the key's id too: the dump masks the key, and the environment id no longer holds it
    key = (threading.get_ident(), id(loop), f"{key_id(settings)}{settings.model_dump_json()}")
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = BackdropClient(settings, limiter=limiter_for(settings))
            _clients[key] = client
        return client


_receiver: WebhookReceiver | None = None


def set_receiver(receiver: WebhookReceiver | None) -> None:
    """The process's webhook receiver (started by the flow), or None to poll only."""
    global _receiver
    _receiver = receiver


def receiver() -> WebhookReceiver | None:
    return _receiver


def planner_for(run_key: str, settings: BackdropSettings) -> PollPlanner:
    """One poll planner per flow run: what one task learns about durations times the next one's poll."""
    with _lock:
        if run_key not in _planners:
            _planners[run_key] = PollPlanner(settings)
        return _planners[run_key]


def forget_planner(run_key: str) -> PollPlanner | None:
    with _lock:
        return _planners.pop(run_key, None)


def client_stats() -> dict[str, object]:
    """Requests by route, 429s, retries and transport errors of the running loop's clients, summed."""
    loop_id = id(asyncio.get_running_loop())
    total: dict[str, object] = {"requests": {}, "http_429": 0, "retries": 0, "transport_errors": 0}
    with _lock:
        mine = [c for k, c in _clients.items() if k[1] == loop_id]
    for client in mine:
        snap = client.stats.snapshot()
        for route, n in snap["requests"].items():  # type: ignore[union-attr]
            total["requests"][route] = total["requests"].get(route, 0) + n  # type: ignore[index,union-attr]
        for name in ("http_429", "retries", "transport_errors"):
            total[name] = int(total[name]) + int(snap[name])  # type: ignore[call-overload]
    return total


async def close_clients() -> None:
    """Close the clients that belong to the running loop (call at the end of a flow)."""
    loop_id = id(asyncio.get_running_loop())
    with _lock:
        mine = [k for k in _clients if k[1] == loop_id]
        clients = [_clients.pop(k) for k in mine]
    for client in clients:
        await client.aclose()
