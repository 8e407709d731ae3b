"""`BackdropClient`: the async caller side of the API contract (vendor or sandbox alike).

Every attempt to an API route first awaits the shared rate limiter; storage (the presigned PUT and
the result download) is a separate httpx client without the Authorization header and unpaced.
Retries follow `_http.should_retry`; a create whose answer was lost raises `AmbiguousCreate`.

This module owns the client's wiring (clients, limiter, retrier), its lifetime and the result
download; the API sections are mixins over one `_call` (`_calls.py`): `_files.py` (uploads),
`_tasks.py` (tasks and templates), `_credits.py` (credit, history, feature costs).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from backdrop.client._credits import CreditCalls
from backdrop.client._files import FileCalls
from backdrop.client._http import Policy, api_key_or_raise, build_api_client, build_storage_client
from backdrop.client._retry import Retrier
from backdrop.client._tasks import TaskCalls
from backdrop.client.download import download_once
from backdrop.client.models import ClientStats, DownloadedFile
from backdrop.pacing.memory import RateLimiter, shared_limiter
from backdrop.settings import BackdropSettings


class BackdropClient(FileCalls, TaskCalls, CreditCalls):
    """Async client for the background-change API (vendor or sandbox: only `api_url` differs).

    One instance belongs to one event loop (its connection pools do). The rate limiter is the caller's choice
    (`backdrop.pacing.limiter_for`: the database limiter when `limiter_url` is set); by default it is the one
    shared by every instance in the process with the same URL, key and limits.
    """

    def __init__(
        self,
        settings: BackdropSettings,
        *,
        limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        storage_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._key = api_key_or_raise(settings)
        self._limiter: RateLimiter = limiter if limiter is not None else shared_limiter(settings)
        self._api = build_api_client(settings, self._key, transport)
        self._storage = build_storage_client(settings, storage_transport)
        self.stats = ClientStats()
        self._retrier = Retrier(
            settings,
            limiter=self._limiter,
            stats=self.stats,
            sleep=sleep,
            rng=rng or random.Random(),  # noqa: S311 - retry jitter, not a secret
            secret=self._key,
        )

    async def __aenter__(self) -> BackdropClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close both connection pools (the API's and storage's)."""
        await self._api.aclose()
        await self._storage.aclose()

    def __repr__(self) -> str:
        s = self.settings
        return f"BackdropClient(api_url={s.api_url!r}, feature={s.feature!r})"

    # ---- results ----------------------------------------------------------------------------

    async def download(
        self, url: str, dest: Path, *, max_bytes: int | None = None, name_by_format: bool = False
    ) -> DownloadedFile:
        """Stream a result to `dest` atomically; 403 (expired URL) raises Forbidden. `name_by_format`: the file
        takes the extension of its bytes instead of `dest`'s (see `backdrop.client.download`)."""
        cap = max_bytes if max_bytes is not None else self.settings.max_download_bytes
        return await self._retrier.run(
            "download",
            Policy.IDEMPOTENT,
            lambda: download_once(self._storage, url, Path(dest), max_bytes=cap, api_url=self.settings.api_url,
                                  name_by_format=name_by_format),
            paced=False,
        )

