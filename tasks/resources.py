"""The run's resources: settings (the Secret block read once), API clients, the poll planner, the webhook
receiver, the upload-slot batcher and their traffic counters, created by a flow at its start and closed in its
`finally`.

Tasks reach them through a `ContextVar` the flow sets, never as task parameters (those stay small and
serialisable, and the cache keys do not change). Prefect runs an async task in its caller's context and submits
a sync one to a worker thread with `contextvars.copy_context()`, so every task run of the flow sees them. A task
called outside a flow (a unit test, `.fn()`) gets short-lived resources of its own, closed when it returns.

Clients are kept per (thread, event loop, settings): concurrent task runs on one loop share one connection pool,
while a worker thread (its own loop) gets its own. Each client gets its rate limiter here, the composition root
(`backdrop.pacing.limiter_for`: shared process-wide, whatever the loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import httpx

from backdrop.client import BackdropClient
from backdrop.identity import key_id
from backdrop.pacing import limiter_for
from backdrop.pipeline.batching import UploadBatcher
from backdrop.pipeline.polling import PollPlanner
from backdrop.pipeline.preflight import fetch_client
from backdrop.pipeline.webhooks import WebhookReceiver
from backdrop.report.metrics import Traffic
from backdrop.settings import BackdropSettings
from tasks.runtime import load_settings

__all__ = ["RunResources", "current_resources", "run_resources", "task_resources"]

_current: ContextVar[RunResources | None] = ContextVar("backdrop_run_resources", default=None)


class RunResources:
    """What one flow run shares between its task runs; `aclose` releases it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}
        self._settings: dict[tuple[str | None, bool], BackdropSettings] = {}
        self._clients: dict[tuple[int, int, str], BackdropClient] = {}
        self._planner: PollPlanner | None = None
        self._batchers: dict[tuple[int, int, str], UploadBatcher] = {}
        self._fetchers: dict[tuple[int, int], httpx.AsyncClient] = {}
        #: the run's webhook receiver (started by the flow), or None to poll only
        self.receiver: WebhookReceiver | None = None

    def settings(self, feature: str | None = None, *, require_key: bool = True) -> BackdropSettings:
        """Settings from the environment, the feature override, and the key (env, or the run's Secret block), read
        once per run and feature: every task of a row asks (reading the environment costs ~2 ms each time), and
        the environment does not change under a run. They are frozen, so sharing them is safe."""
        with self._lock:
            got = self._settings.get((feature, require_key))
            if got is None:
                got = self._settings[(feature, require_key)] = load_settings(feature, self._secrets,
                                                                             require_key=require_key)
            return got

    def client(self, settings: BackdropSettings) -> BackdropClient:
        """The client of these settings for the running thread and event loop."""
        loop = asyncio.get_running_loop()
        # the key's id too: the dump masks the key, and the environment id does not hold it
        key = (threading.get_ident(), id(loop), f"{key_id(settings)}{settings.model_dump_json()}")
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = BackdropClient(settings, limiter=limiter_for(settings))
            return client

    def uploads(self, settings: BackdropSettings) -> UploadBatcher:
        """The run's upload-slot batcher for these settings on the running loop: slot requests of concurrent
        rows share File API calls (`backdrop.pipeline.batching`)."""
        loop = asyncio.get_running_loop()
        key = (threading.get_ident(), id(loop), f"{key_id(settings)}{settings.model_dump_json()}")
        client = self.client(settings)
        with self._lock:
            batcher = self._batchers.get(key)
            if batcher is None:
                batcher = self._batchers[key] = UploadBatcher(
                    client.request_uploads, max_batch=settings.upload_batch,
                    linger=settings.upload_batch_linger_seconds)
            return batcher

    def fetcher(self) -> httpx.AsyncClient:
        """The run's client for input pictures behind URLs on the running loop (fenced: see
        `backdrop.pipeline.preflight.fetch_client`): one for every source, not one (and an SSL context) each."""
        key = (threading.get_ident(), id(asyncio.get_running_loop()))
        with self._lock:
            http = self._fetchers.get(key)
            if http is None:
                http = self._fetchers[key] = fetch_client()
            return http

    def upload_batching(self, settings: BackdropSettings) -> str:
        """For the summary: whether this run's uploads shared File API calls, or why not."""
        with self._lock:
            batchers = list(self._batchers.values())
        refused = next((b for b in batchers if b.refused), None)
        if refused is not None:
            return refused.state
        if not any(b.calls for b in batchers):
            return "not used: no picture was uploaded"  # public URLs only, or every upload came from the cache
        return f"on (N={settings.upload_batch})" if settings.upload_batch > 1 else "off (N=1)"

    def planner(self, settings: BackdropSettings) -> PollPlanner:
        """The run's poll planner: what one task learns about durations times the next one's poll."""
        with self._lock:
            if self._planner is None:
                self._planner = PollPlanner(settings)
            return self._planner

    @property
    def used_planner(self) -> PollPlanner | None:
        """The planner, if any task polled."""
        return self._planner

    def traffic(self) -> Traffic:
        """Requests by route, 429s, retries and transport errors of the running loop's clients, summed."""
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            mine = [c for k, c in self._clients.items() if k[1] == loop_id]
        total = Traffic()
        for client in mine:
            total.add(client.stats.snapshot())
        return total

    async def aclose(self) -> None:
        """Close the clients that belong to the running loop (the run's loop)."""
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            clients = [self._clients.pop(k) for k in [k for k in self._clients if k[1] == loop_id]]
            batchers = [self._batchers.pop(k) for k in [k for k in self._batchers if k[1] == loop_id]]
            fetchers = [self._fetchers.pop(k) for k in [k for k in self._fetchers if k[1] == loop_id]]
        for http in fetchers:
            await http.aclose()
        for batcher in batchers:
            await batcher.aclose()
        for client in clients:
            await client.aclose()


def current_resources() -> RunResources | None:
    """The resources of the flow run this code runs in, if any."""
    return _current.get()


@asynccontextmanager
async def run_resources() -> AsyncIterator[RunResources]:
    """A flow's resources, current for everything it calls until the block ends; closed then."""
    res = RunResources()
    token = _current.set(res)
    try:
        yield res
    finally:
        _current.reset(token)
        await res.aclose()


@asynccontextmanager
async def task_resources() -> AsyncIterator[RunResources]:
    """The running flow's resources; outside a flow, short-lived ones closed when the block ends."""
    res = _current.get()
    if res is not None:
        yield res
        return
    own = RunResources()
    try:
        yield own
    finally:
        await own.aclose()
