"""Settling lost creates from the vendor's credit history, failing closed.

A create whose answer was lost (`ambiguous`, or `creating` left by a dead run) may or may not have made a
task, and the vendor charges a task at its success. The only record is `GET /s2s/v1.0/client/credit/history`:
charges with a time stamp and the task id (`target_id`), nothing about the input. So:

* **Orphans** are the charges of this feature that no ledger row knows by a create's answer.
* Each lost create has a **window**: from a little before its claim until `settle_after` after the last moment
  its request can have left (the ledger touches the row right before sending). A task is charged inside its
  create's window; that bound is the one assumption, and it is a setting.
* The vendor's time stamps are compared with ours only through a **calibrated skew** (`backdrop.pipeline.history`).
* A lost create with **no orphan in its window**, once the window has closed and the history has been read
  completely back to its start, made no charge: it is `not_created` and may be created again.
* A charge is **attributed** to a lost create only when it is the only orphan in that create's window, that
  window is the only unsettled create's window it falls in, no other unsettled create has the same picture,
  and the result picture keeps the input's subject (`backdrop.pipeline.evidence`). Then the row gets the task id.
* Everything else stays `pending_reconcile`, with its candidate charges written to the ledger, for a person to
  settle with `backdrop reconcile`. Nothing is created again while any charge could be its.

Nothing here depends on the history's order (it is read until the order seen so far proves the rest is older,
or to its end), on the result's size or format, on the host's or the database's time zone, or on who else
spends on the key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from backdrop.client.models import CreditHistoryEntry
from backdrop.pipeline.candidates import Vendor
from backdrop.pipeline.evidence import Verdict
from backdrop.pipeline.history import (
    CLOCK_SLACK,
    MAX_ZONE_ERROR,
    RIPE_SLACK,
    UNTARGETED,
    candidate_action,
    read_history,
    skew_bounds,
)
from backdrop.store.ledger import Ledger, LedgerEntry, owner_alive

if TYPE_CHECKING:  # the lifecycle imports this module; settle_in_run only drives the lifecycle it is given
    from backdrop.pipeline.lifecycle import RowLifecycle
    from backdrop.pipeline.outcomes import ItemResult
    from backdrop.pipeline.plan import WorkItem

__all__ = ["LOST", "Settlement", "decide", "is_lost", "pending_rows", "settle_in_run", "settle_lost_creates"]

#: ledger states of a create whose answer never came
LOST = ("ambiguous", "creating", "pending_reconcile")
def is_lost(e: LedgerEntry, *, create_window: float, now: datetime) -> bool:
    """A create with no task id whose answer will not come any more (its run is gone, or it is too old)."""
    if e.task_id or e.status not in LOST:
        return False
    if e.status != "creating":
        return True
    if owner_alive(e.owner) is True:
        return False
    return owner_alive(e.owner) is False or (now - e.updated_at).total_seconds() >= create_window


@dataclass
class Settlement:
    attributed: dict[str, str] = field(default_factory=dict)  # content_key -> task id
    not_created: list[str] = field(default_factory=list)
    pending: dict[str, list[str]] = field(default_factory=dict)  # content_key -> candidate task ids
    waiting: list[str] = field(default_factory=list)  # windows still open, or changed by another run
    history_complete: bool = True


async def settle_lost_creates(
    vendor: Vendor,
    ledger: Ledger,
    *,
    environment: str,
    key_id: str | None,
    settle_after: float,
    create_window: float,
    max_pages: int = 200,
    now: datetime | None = None,
) -> Settlement:
    """Settle what the vendor's records can tell about the lost creates of `environment` (see the module)."""
    now = now or datetime.now(UTC)
    rows = ledger.entries(environment=environment)
    unsettled = [e for e in rows if not e.task_id and e.status in LOST]
    lost = {e.id: e for e in unsettled if is_lost(e, create_window=create_window, now=now)}
    result = Settlement()
    if not lost:
        return result
    attributed_ids = {e.task_id for e in rows if e.task_id and e.error_code == "attributed"}
    answered = ledger.known_task_ids()  # task ids a create's answer gave us, or attributed beyond doubt
    known = {e.task_id: e for e in rows if e.task_id and e.task_id not in attributed_ids}  # they calibrate

    def after(e: LedgerEntry) -> timedelta:
        """How long after its last touch a lost create may still be charged: a `creating` row was touched right
        before sending, and the send itself can last `create_window`; an `ambiguous` row was marked after."""
        return timedelta(seconds=settle_after + (create_window if e.status == "creating" else 0.0))

    # read with the widest skew first, so that the calibration has the pages it needs
    since = min(e.created_at for e in unsettled) - MAX_ZONE_ERROR - 2 * CLOCK_SLACK
    history = await read_history(vendor.history_page, since, max_pages=max_pages)
    lo, hi = skew_bounds(history.entries, known, (min(e.created_at for e in unsettled),
                                                  max(e.updated_at for e in unsettled)), now)
    # a charge of this feature that no create's answer gave us; one without a task id (or whose units could not
    # be read) can never be attributed, but it still rules out "not created" wherever it falls
    orphans = [h if h.target_id else h.model_copy(update={"target_id": f"{UNTARGETED}{h.id}"})
               for h in history.entries
               if h.units <= 0 and candidate_action(h.action) and h.target_id not in answered]

    def window(e: LedgerEntry) -> tuple[datetime, datetime | None]:
        """In the vendor's time: from before the claim to `after` past the last moment it can have been sent."""
        if e.id not in lost:
            return e.created_at + lo - CLOCK_SLACK, None  # still being sent: open-ended
        return e.created_at + lo - CLOCK_SLACK, e.updated_at + after(e) + hi + CLOCK_SLACK

    windows = {e.id: window(e) for e in unsettled}

    def inside(h: CreditHistoryEntry, e: LedgerEntry) -> bool:
        if h.timestamp.timestamp() <= 0:
            return True  # no time stamp: it could be anyone's
        start, end = windows[e.id]
        return h.timestamp >= start and (end is None or h.timestamp <= end)

    holders = {h.target_id: [e for e in unsettled if inside(h, e)] for h in orphans}
    complete = history.complete_since
    result.history_complete = complete is not None
    ripe: dict[int, list[str]] = {}  # lost row id -> its candidate charges

    def settled(e: LedgerEntry, **verdict: Any) -> bool:
        """Record a verdict drawn from this read, unless another run sent the create (or had its answer) since."""
        if ledger.mark_unchanged(e, **verdict):
            return True
        result.waiting.append(e.content_key)
        return False
    for e in lost.values():
        if key_id is not None and e.key_id is not None and e.key_id != key_id:
            continue  # made with another key: its account may not be this history's
        if now < e.updated_at + after(e) + RIPE_SLACK:
            result.waiting.append(e.content_key)  # a charge may still come; keep the pictures of those seen,
            await vendor.show([h.target_id or "" for h in orphans if inside(h, e)])  # before the vendor forgets
            continue
        if complete is None or complete > windows[e.id][0]:
            result.pending[e.content_key] = []  # the history does not reach back far enough to tell
            continue
        mine = [h.target_id or "" for h in orphans if inside(h, e)]
        if not mine:
            if settled(e, status="failed", error_code="ambiguous_not_created",
                       error_message="no charge of this feature appeared in the lost create's window"):
                result.not_created.append(e.content_key)
            continue
        ripe[e.id] = mine

    verdicts: dict[tuple[str, int], Verdict] = {}

    async def verdict(task_id: str, e: LedgerEntry) -> Verdict:
        if task_id.startswith(UNTARGETED):
            return "unknown"
        if (task_id, e.id) not in verdicts:
            verdicts[task_id, e.id] = await vendor.picture_verdict(task_id, e)
        return verdicts[task_id, e.id]

    for row_id, mine in ripe.items():
        e = lost[row_id]
        same_picture = any(o.id != e.id and o.image_sha256 == e.image_sha256 for o in unsettled)
        chosen = await _attribute(e, mine, holders, attributed_ids, verdict) if not same_picture else None
        if chosen is not None:
            if settled(e, status="created", task_id=chosen, error_code="attributed",
                       error_message="task id recovered from the credit history: the one charge in the lost "
                                     "create's window whose picture keeps its input's subject, and no other "
                                     "unsettled create's picture"):
                attributed_ids.add(chosen)
                result.attributed[e.content_key] = chosen
        # a `creating` row's touch moves to the last moment it can have been sent: as `pending_reconcile` its window
        # ends `settle_after` past its touch (as an `ambiguous` row's), and must keep the candidates found now
        elif settled(e, touch=False, status="pending_reconcile", error_code="ambiguous_create",
                     updated_at=e.updated_at + after(e) - timedelta(seconds=settle_after),
                     error_message="candidate charges: " + " ".join(mine)):
            result.pending[e.content_key] = mine
            await vendor.show(mine)
    return result


async def _attribute(
    e: LedgerEntry,
    mine: list[str],
    holders: dict[str | None, list[LedgerEntry]],
    taken: set[str],
    verdict: Callable[[str, LedgerEntry], Awaitable[Verdict]],
) -> str | None:
    """The one charge that is `e`'s beyond doubt, or None.

    It must keep `e`'s subject, every other charge in `e`'s window must clearly not, and every other
    unsettled create whose window holds that charge must clearly not be in its picture either.
    """
    matches = []
    for task_id in mine:
        v = await verdict(task_id, e)
        if v == "unknown":
            return None
        if v == "match":
            matches.append(task_id)
    if len(matches) != 1 or matches[0] in taken:
        return None
    chosen = matches[0]
    for other in holders.get(chosen, []):
        if other.id != e.id and await verdict(chosen, other) != "no":
            return None
    return chosen


Decision = Literal["task", "not_created", "recreate"]


def pending_rows(ledger: Ledger, environment: str) -> list[LedgerEntry]:
    """Rows a person may settle: lost creates without a task id, newest attempt of each picture."""
    latest: dict[str, LedgerEntry] = {}
    for e in ledger.entries(environment=environment):
        if e.content_key not in latest or e.attempt > latest[e.content_key].attempt:
            latest[e.content_key] = e
    return [e for e in latest.values() if not e.task_id and e.status in LOST]


def decide(ledger: Ledger, environment: str, key_prefix: str, decision: Decision, *,
           task_id: str | None = None) -> LedgerEntry:
    """Record a person's settlement of one picture (the newest attempt of the content key starting with
    `key_prefix`): `task` (this charge is its create: the next run polls it and reports the charge),
    `not_created` (its lost create made nothing: the next run creates it), or `recreate` (create it again
    although it may have been paid: the next run's row is flagged `possible_duplicate`)."""
    keys = {e.content_key for e in ledger.entries(environment=environment) if e.content_key.startswith(key_prefix)}
    if len(keys) != 1:
        raise ValueError(f"{len(keys)} pictures of this account have a content key starting with {key_prefix!r}")
    [key] = keys
    entry = max(ledger.attempts(key), key=lambda e: e.attempt)
    if decision == "task":
        if not task_id or task_id.startswith(UNTARGETED):
            raise ValueError("give the task id of the charge (a history entry without one cannot be attributed)")
        if entry.task_id or entry.status not in LOST:
            raise ValueError(f"this picture is {entry.status} with task {entry.task_id}: nothing to attribute")
        if task_id in ledger.known_task_ids():
            raise ValueError(f"task {task_id} already belongs to a row: one charge, one row")
        ledger.mark(key, entry.attempt, status="created", task_id=task_id, error_code="attributed",
                    error_message="task id chosen by a person (backdrop reconcile)")
    elif decision == "not_created":
        if entry.task_id or entry.status not in LOST:
            raise ValueError(f"this picture is {entry.status}: it is not a lost create")
        ledger.mark(key, entry.attempt, status="failed", error_code="ambiguous_not_created",
                    error_message="a person found no charge for this lost create (backdrop reconcile)")
    else:
        if entry.status in LOST and entry.task_id is None:
            ledger.mark(key, entry.attempt, status="failed", error_code="recreated_by_hand",
                        error_message="a person chose to create it again (backdrop reconcile --recreate)")
        else:  # a paid or failed picture keeps its row; a new attempt row carries the decision
            ledger.claim(key, entry.attempt + 1, environment=environment, run_id="backdrop-reconcile",
                         row_id=entry.row_id, image_sha256=entry.image_sha256, prompt=entry.prompt,
                         template_id=entry.template_id, key_id=entry.key_id)
            ledger.mark(key, entry.attempt + 1, status="failed", error_code="recreated_by_hand",
                        error_message="a person chose to create it again (backdrop reconcile --recreate)")
    return max(ledger.attempts(key), key=lambda e: e.attempt)


async def settle_in_run(
    runner: RowLifecycle,
    results: list[tuple[WorkItem, ItemResult]],
    settle: Callable[[], Awaitable[Settlement]],
    *,
    wait_seconds: float,
    settle_after: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[tuple[WorkItem, ItemResult]]:
    """Rows of this run left pending by a lost create: wait (at most `wait_seconds`) until the vendor's records
    can tell, settle them, and finish those they settled: an attributed task is polled and downloaded, a create
    that made nothing is made now. Only what the records cannot tell stays pending."""
    out = list(results)
    deadline = clock() + wait_seconds
    step = max(0.2, min(30.0, settle_after / 4))
    while True:
        lost = {i: n for n, (item, res) in enumerate(out) if res.status == "pending_reconcile" and not res.task_id
                for i in [item.key]}
        if not lost or clock() >= deadline:
            return out
        settled = await settle()
        for key in [*settled.attributed, *settled.not_created, *settled.pending]:
            if key not in lost:
                continue
            n = lost[key]
            item = out[n][0]
            if key in settled.not_created and out[n][1].error_code == "ambiguous_create" and out[n][1].attempts:
                await runner.budget.refund()  # this run counted it as spent; it never was
            out[n] = (item, await runner.run(item))
        if not any(k in lost for k in settled.waiting):
            return out  # nothing of ours can still change: the rest wait for a person
        await sleep(min(step, max(0.0, deadline - clock())))
