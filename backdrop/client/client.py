"""`BackdropClient`: the async caller side of the API contract (vendor or sandbox alike).

Every attempt to an API route first awaits the shared rate limiter; storage (the presigned PUT and
the result download) is a separate httpx client without the Authorization header and unpaced.
Retries follow `_http.should_retry`; a create whose answer was lost raises `AmbiguousCreate`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

from backdrop.client import _parse
from backdrop.client._errors import error_from_response, unexpected_body
from backdrop.client._http import (
    Policy,
    api_key_or_raise,
    build_api_client,
    build_storage_client,
    exact_request,
    file_chunks,
)
from backdrop.client._retry import Retrier
from backdrop.client.download import download_once
from backdrop.client.models import (
    ClientStats,
    CreatedTask,
    CreditBalance,
    CreditHistoryEntry,
    DownloadedFile,
    FeatureCost,
    TaskStatus,
    Template,
    UploadSlot,
)
from backdrop.errors import AmbiguousCreate, ClaimLost, InvalidParameters, ServerError
from backdrop.pacing.memory import RateLimiter, shared_limiter
from backdrop.settings import BackdropSettings


class BackdropClient:
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
            rng=rng or random.Random(),
            secret=self._key,
        )

    async def __aenter__(self) -> BackdropClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._storage.aclose()

    def __repr__(self) -> str:
        s = self.settings
        return f"BackdropClient(api_url={s.api_url!r}, feature={s.feature!r})"

    async def _call(
        self,
        route: str,
        method: str,
        path: str,
        envelope: str | None,
        *,
        policy: Policy = Policy.IDEMPOTENT,
        json: Any = None,
        params: dict[str, Any] | None = None,
        feature_route: bool = False,
        create_from_file: bool = False,
        before_send: Callable[[], bool] | None = None,
    ) -> tuple[Any, str | None]:
        """One API call with retries: (the envelope's content, x-request-id). `before_send` runs right before
        each attempt leaves (after the rate limiter); False stops it unsent (ClaimLost)."""
        feature = self.settings.feature if feature_route else None

        async def attempt() -> tuple[Any, str | None]:
            if before_send is not None and not before_send():
                raise ClaimLost("the ledger claim was settled by another run before this create was sent")
            resp = await self._api.request(method, path, json=json, params=params)
            if not resp.is_success:
                raise error_from_response(
                    resp, secret=self._key, feature=feature, create_from_file=create_from_file
                )
            try:
                body = resp.json()
            except ValueError:
                raise unexpected_body(resp, "not JSON") from None
            if envelope is not None and (not isinstance(body, dict) or envelope not in body):
                raise unexpected_body(resp, f"no {envelope!r} field")
            content = body[envelope] if envelope is not None else body
            return content, resp.headers.get("x-request-id")

        return await self._retrier.run(route, policy, attempt)

    async def _paged(
        self,
        route: str,
        path: str,
        items_key: str,
        envelope: str,
        page_size: int,
        max_pages: int | None = None,
        stop: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Follow `next_token` until it is null, `max_pages`, or `stop(page_items)` says enough."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        seen: set[str] = set()
        pages = 0
        while max_pages is None or pages < max_pages:
            params: dict[str, Any] = {"page_size": page_size}
            if token:
                params["starting_token"] = token
            content, _ = await self._call(
                route, "GET", path, envelope, params=params, feature_route=route == "templates"
            )
            pages += 1
            page = _parse.page(content, items_key)
            items.extend(page.items)
            token = page.next_token
            if not token or (stop is not None and stop(page.items)):
                break
            if token in seen:
                raise ServerError(f"pagination of {path} repeats next_token after {pages} pages")
            seen.add(token)
        return items

    # ---- files ------------------------------------------------------------------------------

    async def request_upload(
        self, *, file_name: str, content_type: str, file_size: int
    ) -> UploadSlot:
        """Register a file and get its presigned upload request (free)."""
        s = self.settings
        path = f"/s2s/v2.0/file/{s.feature}" if s.upload_route == "feature" else "/s2s/v2.0/file"
        item = {"content_type": content_type, "file_name": file_name, "file_size": file_size}
        body = {"files": [item]}
        data, request_id = await self._call(
            "file", "POST", path, "data", json=body, feature_route=s.upload_route == "feature"
        )
        return _parse.upload_slot(data, request_id)

    async def put_file(self, slot: UploadSlot, path: Path) -> None:
        """PUT the file, streamed from disk, with exactly `slot.headers` and no Authorization."""
        if not slot.url.startswith(("http://", "https://")):
            raise InvalidParameters("the upload slot has no usable URL (need http:// or https://)")
        size = path.stat().st_size
        headers = dict(slot.headers)
        declared = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
        if declared is None:
            # framing only: presigned storage refuses a chunked body
            headers["Content-Length"] = str(size)
        elif declared.strip() != str(size):
            raise InvalidParameters(
                f"{path.name} is {size} bytes but its upload slot was requested for "
                f"{declared.strip()}"
            )

        async def attempt() -> None:
            chunks = file_chunks(path)
            request = exact_request(self._storage, slot.method, slot.url, headers, chunks)
            resp = await self._storage.send(request)
            if not resp.is_success:
                raise error_from_response(resp, with_url=True)

        await self._retrier.run("put", Policy.IDEMPOTENT, attempt, paced=False)

    async def upload_file(
        self, path: Path, *, content_type: str, file_name: str | None = None
    ) -> str:
        """Request a slot and PUT the file; returns the `file_id`."""
        slot = await self.request_upload(
            file_name=file_name or path.name,
            content_type=content_type,
            file_size=path.stat().st_size,
        )
        await self.put_file(slot, path)
        return slot.file_id

    # ---- tasks ------------------------------------------------------------------------------

    async def create_task(
        self,
        *,
        src_file_id: str | None = None,
        src_file_url: str | None = None,
        prompt: str | None = None,
        template_id: str | None = None,
        task_type: Literal["prompt", "template"] | None = None,
        before_send: Callable[[], bool] | None = None,
    ) -> CreatedTask:
        """Start a task (billable on success). Never repeated once it may have been sent."""
        if (src_file_id is None) == (src_file_url is None):
            raise InvalidParameters("give exactly one of src_file_id and src_file_url", refused=True)
        body: dict[str, str] = {}
        for name, value in (
            ("src_file_id", src_file_id),
            ("src_file_url", src_file_url),
            ("type", task_type),
            ("prompt", prompt),
            ("template_id", template_id),
        ):
            if value is not None:
                body[name] = value
        data, request_id = await self._call(
            "create",
            "POST",
            f"/s2s/v2.0/task/{self.settings.feature}",
            "data",
            policy=Policy.CREATE,
            json=body,
            feature_route=True,
            create_from_file=src_file_id is not None,
            before_send=before_send,
        )
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if isinstance(task_id, bool) or not isinstance(task_id, str | int) or not str(task_id).strip():
            raise AmbiguousCreate(
                "the create answered 200 without a task_id; reconcile before creating again",
                status=200,
                request_id=request_id,
            )
        return CreatedTask(task_id=str(task_id), request_id=request_id)

    async def get_task(self, task_id: str) -> TaskStatus:
        """One poll. An engine failure comes back as `status="error"`, not raised."""
        data, request_id = await self._call(
            "poll",
            "GET",
            f"/s2s/v2.0/task/{self.settings.feature}/{quote(task_id, safe='')}",
            "data",
            feature_route=True,
        )
        return _parse.task_status(task_id, data, request_id)

    async def delete_task(self, task_id: str) -> None:
        """Delete a finished task and its files (no refund)."""
        await self._call(
            "delete",
            "POST",
            "/s2s/v2.0/task/delete",
            None,
            policy=Policy.UNSAFE,
            json={"task_id": task_id},
        )

    async def list_templates(self, *, page_size: int = 20) -> list[Template]:
        rows = await self._paged(
            "templates",
            f"/s2s/v2.0/task/template/{self.settings.feature}",
            "templates",
            "data",
            page_size,
        )
        return _parse.each(_parse.template, rows)

    # ---- credits ----------------------------------------------------------------------------

    async def credit_balance(self) -> CreditBalance:
        results, _ = await self._call("credit", "GET", "/s2s/v1.0/client/credit", "results")
        return _parse.credit_balance(results, now=datetime.now(UTC))

    async def credit_history(
        self, *, page_size: int = 30, max_pages: int | None = None, since: datetime | None = None
    ) -> list[CreditHistoryEntry]:
        """Credit history, newest first; with `since`, stop paging once entries are older than it."""
        stop = None
        if since is not None:
            since_ms = since.timestamp() * 1000

            def stop(items: list[dict[str, Any]]) -> bool:
                stamps = [i.get("timestamp") for i in items if isinstance(i.get("timestamp"), int | float)]
                return bool(stamps) and min(stamps) < since_ms

        rows = await self._paged(
            "history", "/s2s/v1.0/client/credit/history", "history", "result", page_size, max_pages,
            stop,
        )
        entries = _parse.each(_parse.history_entry, rows)
        return [e for e in entries if since is None or e.timestamp >= since]

    async def credit_history_page(
        self, token: str | None = None, *, page_size: int = 30
    ) -> tuple[list[CreditHistoryEntry], str | None]:
        """One page of the credit history and the next page's token (None on the last page). The order of
        the entries is not published: `backdrop.pipeline.reconcile.read_history` reads pages without assuming it."""
        params: dict[str, Any] = {"page_size": page_size}
        if token:
            params["starting_token"] = token
        content, _ = await self._call("history", "GET", "/s2s/v1.0/client/credit/history", "result", params=params)
        page = _parse.page(content, "history")
        return _parse.each(_parse.history_entry, page.items), page.next_token

    async def feature_costs(self, *, page_size: int = 20) -> list[FeatureCost]:
        rows = await self._paged(
            "feature_cost", "/s2s/v2.0/credit/feature-cost", "skus", "result", page_size, None
        )
        return _parse.each(_parse.feature_cost, rows)

    # ---- results ----------------------------------------------------------------------------

    async def download(
        self, url: str, dest: Path, *, max_bytes: int | None = None
    ) -> DownloadedFile:
        """Stream a result to `dest` atomically; 403 (expired URL) raises Forbidden."""
        cap = max_bytes if max_bytes is not None else self.settings.max_download_bytes
        return await self._retrier.run(
            "download",
            Policy.IDEMPOTENT,
            lambda: download_once(self._storage, url, Path(dest), max_bytes=cap, api_url=self.settings.api_url),
            paced=False,
        )

