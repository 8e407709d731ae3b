"""The vendor's credit section: the balance and its lots (`/s2s/v1.0/client/credit`), the credit history
(`.../credit/history`, paged; what reconciliation reads) and the price list (`/s2s/v2.0/credit/feature-cost`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from backdrop.client import _parse
from backdrop.client._calls import ApiCalls
from backdrop.client.models import CreditBalance, CreditHistoryEntry, FeatureCost

__all__ = ["CreditCalls"]


class CreditCalls(ApiCalls):
    """`BackdropClient`'s credit, history and feature-cost methods (all free, all idempotent)."""

    async def credit_balance(self) -> CreditBalance:
        """The account's credit lots and their total, as of now."""
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
                stamps = [t for i in items if isinstance(t := i.get("timestamp"), int | float)]
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
        the entries is not published: `backdrop.pipeline.history.read_history` reads pages without assuming it."""
        params: dict[str, Any] = {"page_size": page_size}
        if token:
            params["starting_token"] = token
        content, _ = await self._call("history", "GET", "/s2s/v1.0/client/credit/history", "result", params=params)
        page = _parse.page(content, "history")
        return _parse.each(_parse.history_entry, page.items), page.next_token

    async def feature_costs(self, *, page_size: int = 20) -> list[FeatureCost]:
        """The price list: what each feature's SKU costs (all pages)."""
        rows = await self._paged(
            "feature_cost", "/s2s/v2.0/credit/feature-cost", "skus", "result", page_size, None
        )
        return _parse.each(_parse.feature_cost, rows)
