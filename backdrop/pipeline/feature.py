"""Which feature slug a run creates under, and what follows from it (Prefect-free).

`BACKDROP_FEATURE=auto` (the default) is resolved once per run, before its first upload, from the account's
feature-cost list (free: `GET /s2s/v2.0/credit/feature-cost`, whose SKUs carry `run_task_url`s such as
`.../s2s/v2.0/task/bg-replace`): the slug it lists, `bg-replace` when both are there. The upload route follows
the resolved slug (`BackdropSettings.upload_route`). When the list names neither, or cannot be read, the run
says so in one line; a dry run goes on assuming `bg-replace` (it creates nothing), a paid run creates nothing
(`FeatureChoice.slug` is None: rows that would be created are skipped with `feature_unknown`), because a guessed
slug could pay for the wrong edition or fail every row. Rows already paid or in flight are still reused or polled:
each task is polled under the slug its create recorded (`created_under`), never the run's.

Template rows on a slug without templates (`bg-replace-v2`: its edition had none) fail preflight with
`template_unsupported`, before anything is paid (`reject_unsupported_templates`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from backdrop.client.models import FeatureCost
from backdrop.errors import BackdropError, InputRejected
from backdrop.pipeline.plan import WorkItem
from backdrop.settings import BackdropSettings, FeatureSlug
from backdrop.store.ledger import Ledger, LedgerEntry
from backdrop.store.schema import IN_FLIGHT

__all__ = ["DRY_RUN_ASSUMES", "OLD_DEFAULT", "FeatureChoice", "choose_feature", "created_under", "listed_slugs",
           "reject_unsupported_templates"]

#: the slug rows without a recorded one were created under: the default before issue 14
OLD_DEFAULT: FeatureSlug = "bg-replace-v2"
#: what a dry run assumes when the list names no slug: the newest documented one
DRY_RUN_ASSUMES: FeatureSlug = "bg-replace"
#: reads of the list when it answers a retryable error (429, 5xx, transport) after the client's own retries
_READS = 3
#: slugs whose edition has templates (bg-replace-v2's documentation has none)
_WITH_TEMPLATES = frozenset({"bg-replace"})
_TASK_PATH = re.compile(r"/task/(bg-replace(?:-v2)?)/?$")


@dataclass(frozen=True)
class FeatureChoice:
    """The run's slug (None: it may create nothing), its settings, and the one line to say when it is not clear."""

    slug: FeatureSlug | None
    settings: BackdropSettings
    note: str | None = None
    listed: tuple[str, ...] = ()

    def stop(self) -> dict[str, str]:
        """The lifecycle's stop signal when no slug is known: rows that would be created are skipped."""
        return {} if self.slug is not None else {"feature_unknown": self.note or "no feature slug is known"}


def listed_slugs(costs: list[FeatureCost]) -> set[FeatureSlug]:
    """The background-change slugs the price list names, from each SKU's `run_task_url` (host ignored)."""
    found: set[FeatureSlug] = set()
    for sku in costs:
        match = _TASK_PATH.search(urlsplit(sku.run_task_url or "").path)
        if match:
            found.add("bg-replace" if match.group(1) == "bg-replace" else "bg-replace-v2")
    return found


async def _read(read_costs: Callable[[], Awaitable[list[FeatureCost]]], pause: float,
                sleep: Callable[[float], Awaitable[None]]) -> list[FeatureCost]:
    """The list; a retryable error (a 429 when another process of this key has just spent the second's budget,
    a 5xx) is read again after a pause (1, then 2 short windows), at most `_READS` times in all."""
    for n in range(1, _READS):
        try:
            return await read_costs()
        except BackdropError as exc:
            if not exc.retryable:
                raise
            await sleep(pause * n)
    return await read_costs()


async def choose_feature(settings: BackdropSettings, read_costs: Callable[[], Awaitable[list[FeatureCost]]], *,
                         dry_run: bool, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> FeatureChoice:
    """The slug this run creates under: the setting (or the flow's parameter) when it names one, else the one
    the account's feature-cost list names (`bg-replace` when both). Never raises for the list."""
    if settings.feature != "auto":
        return FeatureChoice(settings.feature, settings)
    try:
        listed = listed_slugs(await _read(read_costs, settings.rate_limit_short_window_seconds, sleep))
    except BackdropError as exc:
        problem = f"the account's feature-cost list could not be read ({exc.report_code}: {str(exc)[:160]})"
        listed = set()
    else:
        problem = "the account's feature-cost list names neither bg-replace nor bg-replace-v2"
    slug: FeatureSlug | None = "bg-replace" if "bg-replace" in listed else "bg-replace-v2" if listed else None
    if slug is not None:
        return FeatureChoice(slug, settings.model_copy(update={"feature": slug}), listed=tuple(sorted(listed)))
    if dry_run:
        return FeatureChoice(None, settings.model_copy(update={"feature": DRY_RUN_ASSUMES}),
                             note=f"{problem}; this dry run assumes {DRY_RUN_ASSUMES}")
    return FeatureChoice(None, settings, note=f"{problem}; nothing is created (set BACKDROP_FEATURE to bg-replace "
                                              "or bg-replace-v2 to choose)")


def created_under(entry: LedgerEntry) -> FeatureSlug:
    """The slug a ledger row's task was created under, and is polled under: the one it recorded, else the old
    default (rows from before issue 14 moved by `backdrop.store.migrate` record the slug their old id named)."""
    return "bg-replace" if entry.feature == "bg-replace" else OLD_DEFAULT


def reject_unsupported_templates(items: list[WorkItem], slug: FeatureSlug | None, ledger: Ledger
                                 ) -> tuple[list[WorkItem], dict[int, InputRejected]]:
    """Template pictures a slug without templates would create: their rows fail preflight (nothing paid). A
    picture the ledger holds as paid or in flight is kept: it is reused or polled, never created again."""
    if slug is None or slug in _WITH_TEMPLATES:
        return items, {}
    kept: list[WorkItem] = []
    rejected: dict[int, InputRejected] = {}
    for item in items:
        entry = ledger.latest(item.key) if item.task_type == "template" else None
        if item.task_type != "template" or (entry is not None and (entry.status == "succeeded"
                                                                    or entry.status in IN_FLIGHT)):
            kept.append(item)
            continue
        for row in item.rows:
            rejected[row.line] = InputRejected(
                "template_unsupported", f"template {item.template_id!r} cannot be sent to feature {slug}: its "
                "edition has no templates (use a prompt, or BACKDROP_FEATURE=bg-replace); nothing was paid")
    return kept, rejected
