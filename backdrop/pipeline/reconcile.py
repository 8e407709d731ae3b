"""Settling lost creates from the vendor's credit history, failing closed.

A create whose answer was lost (`ambiguous`, or `creating` left by a dead run) may or may not have made a
task, and the vendor charges a task at its success. The only record is `GET /s2s/v1.0/client/credit/history`:
charges with a time stamp and the task id (`target_id`), nothing about the input. So:

* **Orphans** are the charges of this feature that no ledger row knows by a create's answer.
* Each lost create has a **window**: from a little before its claim until `settle_after` after the last moment
  its request can have left (the ledger touches the row right before sending). A task is charged inside its
  create's window; that bound is the one assumption, and it is a setting.
* The vendor's time stamps are compared with ours only through a **calibrated skew**: the known tasks in the
  same history pages (created and seen done by Backdrop) bound how far the vendor's clock or zone is from ours.
  With nothing to calibrate against, any zone (±14 h) is allowed, which makes windows wide and decisions rare.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from backdrop.client import BackdropClient
from backdrop.client.models import CreditHistoryEntry
from backdrop.errors import BackdropError
from backdrop.files import atomic_write
from backdrop.pipeline.evidence import Verdict, keeps_subject
from backdrop.store.ledger import Ledger, LedgerEntry, owner_alive

__all__ = [
    "LOST",
    "ClientVendor",
    "History",
    "Settlement",
    "Vendor",
    "candidate_action",
    "candidate_picture",
    "decide",
    "pending_rows",
    "is_lost",
    "read_history",
    "settle_lost_creates",
    "vendor_units",
]

#: the candidate id of a history entry that names no task
UNTARGETED = "untargeted:"
#: ledger states of a create whose answer never came
LOST = ("ambiguous", "creating", "pending_reconcile")
#: what the calibration cannot see: the hosts sharing a ledger keep their clocks this close (NTP keeps them within
#: milliseconds). Each window is widened by it on both sides, twice over. Wider windows only make decisions rarer:
#: two minutes here left every lost create of a busy batch pending behind one unattributable charge
CLOCK_SLACK = timedelta(seconds=15)
#: our own clock against itself (and other hosts' NTP clocks): the history is read after this much more
RIPE_SLACK = timedelta(seconds=1)
#: known tasks created this close to a lost create calibrate the vendor's clock for it
_NEAR = timedelta(hours=2)
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
#: the widest a time zone mistake can be (UTC-12 to UTC+14)
MAX_ZONE_ERROR = timedelta(hours=14)
#: documented credit-history actions of *other* features (unit system bundle); anything else may be ours
_OTHER_ACTIONS = frozenset({
    "photo_enhance", "api_photo_enhance", "object_removal", "api_object_removal", "background_removal",
    "api_background_removal", "colorize", "api_colorize", "text_to_image", "api_text_to_image", "hair_style",
    "api_hair_style", "blur_background", "wig", "trial_gift_text_to_image", "sign_up_gift",
    "subscription_credits", "subscriber_gift", "permanent_credits", "compensation_from_customer_service",
    "renew", "expire",
})


def candidate_action(action: str) -> bool:
    """A charge whose action names another feature is never ours; `change_background` or unknown may be."""
    return action.strip().lower() not in _OTHER_ACTIONS


@dataclass(frozen=True)
class History:
    entries: list[CreditHistoryEntry]
    complete_since: datetime | None  # every entry at or after this was read (None: not even that)


class Vendor(Protocol):
    """What settling needs from the vendor (the client in production, a fake in the model test)."""

    async def history_page(self, token: str | None) -> tuple[list[CreditHistoryEntry], str | None]: ...

    async def picture_verdict(self, task_id: str, entry: LedgerEntry) -> Verdict: ...

    async def show(self, task_ids: list[str]) -> None:
        """Keep the candidates' pictures where a person will look (the gallery); best effort."""
        ...


async def read_history(
    page: Callable[[str | None], Awaitable[tuple[list[CreditHistoryEntry], str | None]]],
    since: datetime,
    *,
    max_pages: int,
) -> History:
    """Every entry at or after `since`, whatever the order the vendor lists them in.

    Paging stops early only when the entries read so far prove a newest-first order (time stamps that fell, never
    rose, and none missing) and the last page reached back past `since`; otherwise it reads to the end. If
    `max_pages` runs out first, the history is incomplete and `complete_since` says how far back it is complete
    (None when the order gives no such bound).
    """
    entries: list[CreditHistoryEntry] = []
    token: str | None = None
    rose = fell = stampless = False
    seen: set[str] = set()
    for _ in range(max_pages):
        items, token = await page(token)
        for e in items:
            stampless = stampless or e.timestamp.timestamp() <= 0
            if entries:
                rose = rose or e.timestamp > entries[-1].timestamp
                fell = fell or e.timestamp < entries[-1].timestamp
            entries.append(e)
        if not token:
            return History(entries, complete_since=_BEGINNING)
        proven = fell and not rose and not stampless
        if proven and entries[-1].timestamp < since:
            return History(entries, complete_since=entries[-1].timestamp)
        if token in seen:
            break  # a vendor repeating its token: what we have is all we will get
        seen.add(token)
    proven = fell and not rose and not stampless
    return History(entries, complete_since=entries[-1].timestamp if entries and proven else None)


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
    waiting: list[str] = field(default_factory=list)  # windows still open
    history_complete: bool = True


def _skew(
    history: list[CreditHistoryEntry], known: dict[str, LedgerEntry], around: tuple[datetime, datetime],
    now: datetime,
) -> tuple[timedelta, timedelta]:
    """Bounds on (vendor time - our time), from the known tasks in the history created near the lost creates
    (`around`, ±2 h: a zone's summer-time change further away does not count): each was charged after its
    create's claim and before Backdrop saw it done. A contradiction, or a charge stamped in the vendor's future,
    means the vendor's clock cannot be trusted: then any zone is allowed."""
    lo, hi = -MAX_ZONE_ERROR, MAX_ZONE_ERROR
    near = (around[0] - _NEAR, around[1] + _NEAR)
    for h in history:
        row = known.get(h.target_id or "")
        if row is None or row.charged_at is None or h.units >= 0 or not near[0] <= row.created_at <= near[1]:
            continue
        lo = max(lo, h.timestamp - row.charged_at)
        hi = min(hi, h.timestamp - row.created_at)
    latest = max((h.timestamp for h in history), default=None)
    if lo > hi or (latest is not None and latest > now + hi + CLOCK_SLACK):
        return -MAX_ZONE_ERROR, MAX_ZONE_ERROR
    return lo - CLOCK_SLACK, hi + CLOCK_SLACK


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
    lo, hi = _skew(history.entries, known, (min(e.created_at for e in unsettled),
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
            ledger.mark(e.content_key, e.attempt, status="failed", error_code="ambiguous_not_created",
                        error_message="no charge of this feature appeared in the lost create's window")
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
            ledger.mark(e.content_key, e.attempt, status="created", task_id=chosen, error_code="attributed",
                        error_message="task id recovered from the credit history: the one charge in the lost "
                                      "create's window whose picture keeps its input's subject, and no other "
                                      "unsettled create's picture")
            attributed_ids.add(chosen)
            result.attributed[e.content_key] = chosen
            continue
        ledger.mark(e.content_key, e.attempt, touch=False, status="pending_reconcile",
                    error_code="ambiguous_create", error_message="candidate charges: " + " ".join(mine))
        result.pending[e.content_key] = mine
        await vendor.show(mine)
    return result


async def _attribute(
    e: LedgerEntry,
    mine: list[str],
    holders: dict[str | None, list[LedgerEntry]],
    taken: set[str | None],
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


async def vendor_units(
    page: Callable[[str | None], Awaitable[tuple[list[CreditHistoryEntry], str | None]]],
    task_ids: set[str],
    since: datetime,
    *,
    max_pages: int = 200,
) -> float | None:
    """Units the vendor's credit history charged for `task_ids`; None when the history could not be read back
    to `since` (minus any zone error)."""
    if not task_ids:
        return 0.0
    history = await read_history(page, since - MAX_ZONE_ERROR - CLOCK_SLACK, max_pages=max_pages)
    if history.complete_since is None:
        return None
    return float(sum(-e.units for e in history.entries if e.target_id in task_ids and e.units < 0))


class ClientVendor:
    """`Vendor` over the HTTP client: history pages, and a charged task's result judged against the staged
    input of the lost create (`inputs`: image sha256 -> staged file). Each result is fetched once."""

    def __init__(self, client: BackdropClient, inputs: dict[str, str], tmp: Path,
                 keep: Path | None = None) -> None:
        self.client, self.inputs, self.tmp, self.keep = client, inputs, tmp, keep
        self._results: dict[str, bytes | None] = {}

    async def history_page(self, token: str | None) -> tuple[list[CreditHistoryEntry], str | None]:
        return await self.client.credit_history_page(token)

    async def _result(self, task_id: str) -> bytes | None:
        kept = candidate_picture(self.keep, task_id) if self.keep is not None else None
        if task_id not in self._results and kept is not None:
            self._results[task_id] = kept.read_bytes()  # fetched by an earlier pass, maybe before the vendor forgot
        if task_id not in self._results:
            try:
                status = await self.client.get_task(task_id)
                got = None
                if status.status == "success" and status.result_url:
                    got = await self.client.download(status.result_url, self.tmp / f"{len(self._results)}.img")
                self._results[task_id] = got.path.read_bytes() if got else None
            except (BackdropError, OSError):
                self._results[task_id] = None  # a charge we cannot look at proves nothing
        return self._results[task_id]

    async def show(self, task_ids: list[str]) -> None:
        """Save each candidate's result as `<keep>/<task id>.<jpg|png|webp>` (see `candidate_picture`)."""
        if self.keep is None:
            return
        for task_id in task_ids:
            if task_id.startswith(UNTARGETED):
                continue
            data = await self._result(task_id)
            if data is None or candidate_picture(self.keep, task_id) is not None:
                continue
            ext = "png" if data.startswith(b"\x89PNG") else "webp" if data[8:12] == b"WEBP" else "jpg"
            try:
                self.keep.mkdir(parents=True, exist_ok=True)
                atomic_write(self.keep / f"{_safe_id(task_id)}.{ext}", lambda p, d=data: Path(p).write_bytes(d))
            except OSError:
                continue  # a picture to look at is a convenience; the ledger already holds the candidates

    async def picture_verdict(self, task_id: str, entry: LedgerEntry) -> Verdict:
        staged = self.inputs.get(entry.image_sha256 or "")
        result = await self._result(task_id) if staged else None
        if staged is None or result is None:
            return "unknown"
        source = await asyncio.to_thread(Path(staged).read_bytes)
        return await asyncio.to_thread(keeps_subject, source, result)


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


def _safe_id(task_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in task_id)[:120]


def candidate_picture(folder: Path, task_id: str) -> Path | None:
    """The saved result of a candidate charge, if reconciliation could fetch it."""
    for ext in ("jpg", "png", "webp"):
        path = folder / f"{_safe_id(task_id)}.{ext}"
        if path.is_file():
            return path
    return None
