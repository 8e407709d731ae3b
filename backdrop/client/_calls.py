"""The one way the client's API sections call the vendor: `_call` (one request with retries, pacing
and error mapping) and `_paged` (follow `next_token`). `BackdropClient` sets the attributes declared
here; the section mixins (`_files`, `_tasks`, `_credits`) build on these two methods only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from backdrop.client import _parse
from backdrop.client._errors import error_from_response, unexpected_body
from backdrop.client._http import Policy
from backdrop.client._retry import Retrier
from backdrop.errors import ClaimLost, ConfigError, ServerError
from backdrop.settings import BackdropSettings

__all__ = ["ApiCalls"]


class ApiCalls:
    """The base of `BackdropClient` and its section mixins: what a call needs, and the call itself."""

    settings: BackdropSettings
    #: the API key: sent by `_api`, and scrubbed from error messages
    _key: str
    #: the paced API client (Authorization header set)
    _api: httpx.AsyncClient
    #: the unpaced storage client (presigned PUT and result download; no Authorization header)
    _storage: httpx.AsyncClient
    _retrier: Retrier

    def _slug(self, feature: str | None = None) -> str:
        """The feature slug of a route: `feature`, else the settings'. `auto` is never sent: a run resolves it
        from the account's feature-cost list first (`backdrop.pipeline.feature`)."""
        slug = feature or self.settings.feature
        if slug == "auto":
            raise ConfigError("BACKDROP_FEATURE=auto is resolved from the account's feature-cost list before any "
                              "feature route is called; set BACKDROP_FEATURE=bg-replace or bg-replace-v2 here",
                              refused=True)  # never sent: nothing created
        return slug

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
        debt: Callable[[Any], tuple[str | None, str | None]] | None = None,
        due_in: float = 0.0,
    ) -> tuple[Any, str | None]:
        """One API call with retries: (the envelope's content, x-request-id). `before_send` runs right before
        each attempt leaves (after the rate limiter); False stops it unsent (ClaimLost). `debt` reads the content's
        (task running, task ended) for the limiter, and `due_in` says how early a poll is (`Retrier.run`)."""
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

        return await self._retrier.run(route, policy, attempt, due_in=due_in,
                                       debt=None if debt is None else lambda answer: debt(answer[0]))

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
