"""The batch flow's phases before its report: preflight every source, settle lost creates, run every picture.

`flows/change_backgrounds.py` composes these. Running the pictures owns the progress (artifact and event) and
what a stopped run still reports: each picture it finished, and `not_attempted` for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from backdrop.errors import InputRejected
from backdrop.pipeline.inputs import InputRow
from backdrop.pipeline.lifecycle import RowLifecycle
from backdrop.pipeline.outcomes import ItemResult
from backdrop.pipeline.plan import WorkItem
from backdrop.pipeline.preflight import PreparedInput
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger, LedgerEntry
from flows.progress import emit_progress
from tasks.preflight import preflight_input
from tasks.reconcile import settle_lost_creates

__all__ = ["PictureRun", "best_effort", "preflight_sources", "settle_lost"]

T = TypeVar("T")
Results = list[tuple[WorkItem, ItemResult]]


async def best_effort(logger: Any, what: str, call: Awaitable[T]) -> T | None:
    """Await an artifact call; a failure (Prefect's API, say) is logged, never costs the run or its report."""
    try:
        return await call
    except Exception as exc:  # noqa: BLE001
        logger.warning("%s could not be written: %s: %s", what, type(exc).__name__, str(exc)[:200])
        return None


async def preflight_sources(logger: Any, rows: list[InputRow], base_dir: Path | None, staging: Path,
                            fit_inputs: bool, concurrency: int) -> dict[str, PreparedInput | InputRejected]:
    """Preflight every distinct source once; a failure of the task machinery costs only that source's rows."""
    labels: dict[str, str] = {}  # each source's first row id, for its task's name: one pass, not one per source
    for r in rows:
        labels.setdefault(r.image_url, r.row_id[:40])
    sem = asyncio.Semaphore(max(concurrency, 4))

    async def _pre(src: str) -> tuple[str, PreparedInput | InputRejected]:
        async with sem:
            try:
                return src, await preflight_input(src, str(base_dir) if base_dir else None, str(staging),
                                                  fit_inputs, labels[src])
            except Exception as exc:  # noqa: BLE001 - the task machinery itself failed: still only this row
                logger.warning("preflight of %s failed: %s", labels[src], type(exc).__name__)
                return src, InputRejected("preflight_error", f"preflight failed ({type(exc).__name__})")

    return dict(await asyncio.gather(*(_pre(s) for s in labels)))


def settle_lost(settings: BackdropSettings, ledger_url: str, env: str, key: str | None, items: list[WorkItem],
                out_dir: Path, create_window: float) -> Callable[[], Awaitable[Any]]:
    """The call that settles this account's lost creates (before the batch, and again within it)."""
    staged = {i.prepared.sha256: str(i.prepared.path) for i in items}

    async def settle() -> Any:
        return await settle_lost_creates(settings.feature, ledger_url, env, key or "", staged, create_window,
                                         str(out_dir / ".backdrop" / "candidates"))

    return settle


@dataclass
class PictureRun:
    """Every picture of the batch through the lifecycle, `concurrency` at a time, with progress."""

    runner: RowLifecycle
    items: list[WorkItem]
    concurrency: int
    ledger: Ledger
    run_id: str
    units_per_task: int
    logger: Any
    #: every input row, preflight's rejects included: progress counts rows, not unique pictures
    rows_total: int = 0
    finished: dict[int, tuple[WorkItem, ItemResult]] = field(default_factory=dict)  # by index: what a stop reports
    in_flight: set[int] = field(default_factory=set)
    tasks: list[asyncio.Task[tuple[WorkItem, ItemResult]]] = field(default_factory=list)
    done: int = 0
    rows_done: int = 0
    _progress_id: Any = None
    _progress_sent: float = -1.0
    _progress_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def open_progress(self) -> None:
        """Create the run's progress artifact (best effort): rows done of all rows, preflight's rejects done."""
        self.rows_total = max(self.rows_total, sum(len(i.rows) for i in self.items))
        self.rows_done = self.rows_total - sum(len(i.rows) for i in self.items)
        self._progress_id = await best_effort(self.logger, "the progress artifact", acreate_progress_artifact(
            self._percent(), key="backdrop-progress", description=f"rows done of {self.rows_total}"))
        self._progress_sent = self._percent()

    def _percent(self) -> float:
        return 100.0 * self.rows_done / self.rows_total if self.rows_total else 100.0

    async def _send_progress(self, *, final: bool = False) -> None:
        """Move the artifact forward, never back: updates are serialised and only ever raise the figure (picture
        tasks finish in any order), in steps of 5% or more, and the last one is 100%."""
        if self._progress_id is None:
            return
        async with self._progress_lock:
            percent = self._percent()
            if percent <= self._progress_sent or (percent - self._progress_sent < 5.0 and percent < 100.0
                                                  and not final):
                return
            self._progress_sent = percent
            await best_effort(self.logger, "the progress artifact",
                              aupdate_progress_artifact(self._progress_id, percent))

    async def finish_progress(self) -> None:
        """Every row is done: the artifact ends at 100%."""
        self.rows_done = self.rows_total
        await self._send_progress(final=True)

    def start(self) -> None:
        """Start every picture (each waits for its turn)."""
        sem = asyncio.Semaphore(self.concurrency)
        self.tasks = [asyncio.create_task(self._one(sem, n, i)) for n, i in enumerate(self.items)]

    async def results(self) -> Results:
        return list(await asyncio.gather(*self.tasks))

    async def _one(self, sem: asyncio.Semaphore, n: int, item: WorkItem) -> tuple[WorkItem, ItemResult]:
        async with sem:
            self.in_flight.add(n)
            result = await self.runner.run(item)
        self.finished[n] = (item, result)
        self.in_flight.discard(n)
        self.done += 1
        self.rows_done += len(item.rows)
        emit_progress(self.run_id, self.rows_done, self.rows_total, result.status)
        await self._send_progress()
        return item, result

    async def stop(self) -> None:
        """Cancel the pictures, and let those in flight unwind (their ledger writes) before reading what they left."""
        for t in self.tasks:
            t.cancel()
        with contextlib.suppress(BaseException):  # cancelled again: report what there is now
            await asyncio.wait(self.tasks, timeout=10)

    def so_far(self, why: BaseException) -> Results:
        """One result per picture: each finished one's, `not_attempted` for the rest."""
        return [self.finished.get(n) or (item, self._unfinished(n, item, why)) for n, item in enumerate(self.items)]

    def _unfinished(self, n: int, item: WorkItem, why: BaseException) -> ItemResult:
        """A picture the stopped run did not finish: not_attempted; one in flight keeps the task and the charge
        the ledger holds for this run (the next run resumes that task, never pays for it again)."""
        reason = f"the run stopped ({type(why).__name__}) before this picture"
        if n not in self.in_flight:
            return ItemResult(status="not_attempted", error_code="not_reached", message=f"{reason} was started")
        try:
            entry = self.ledger.latest(item.key)
        except Exception:  # noqa: BLE001 - the ledger is out of reach: report the row without its task
            entry = None
        return self._interrupted(entry, reason)

    def _interrupted(self, entry: LedgerEntry | None, reason: str) -> ItemResult:
        charged = entry is not None and entry.charged_run_id == self.run_id
        return ItemResult(status="not_attempted", error_code="interrupted", message=f"{reason} had finished",
                          task_id=entry.task_id if entry else None,
                          units=self.units_per_task if charged else 0,
                          note="the ledger keeps its task: the next run resumes it without paying again"
                          if entry and entry.task_id else None)

    def with_charges(self, results: Results, why: BaseException) -> Results:
        """`results` of a stopped run, with every charge the ledger holds for this run on its picture's row: a stop
        may catch a picture after its charge and before its result (in the settle phase, say). Such a row is
        reported as interrupted, with its task and units; a ledger out of reach leaves `results` as they are."""
        carried = {r.task_id for _, r in results if r.units}
        reason = f"the run stopped ({type(why).__name__}) before this picture"
        out = []
        for item, result in results:
            if not result.units and not result.reused and result.error_code != "not_reached":  # never started
                try:
                    entry = self.ledger.latest(item.key)
                except Exception:  # noqa: BLE001
                    return results
                if entry is not None and entry.charged_run_id == self.run_id and entry.task_id not in carried:
                    result = self._interrupted(entry, reason)
            out.append((item, result))
        return out
