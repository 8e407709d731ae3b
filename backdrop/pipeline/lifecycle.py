"""One picture of a batch, from the ledger's verdict to its outcome: the money-critical state machine.

    ledger says done?      -> reuse the output, pay nothing (output gone: fetch it again, or say so; never demote)
    ledger has a task?     -> poll it (resume), never re-create
    another run is sending -> follow that run's task
    a lost create?         -> pending_reconcile until the credit history settles it (backdrop.pipeline.reconcile)
    else                   -> reserve units -> upload -> claim (ledger) -> create -> wait -> download

Prefect-free: the steps come in as a `Steps` (tasks in flows/picture.py, a fake vendor in the model test).
Every decision that can spend money fails closed:
* a create that may have left is ambiguous unless the vendor refused it (`steps.create_task`);
* after a task id exists, no error makes the row "failed, not charged": polls that fail leave it pending;
* a charge is recorded the moment a success is seen, and the row that saw it reports it, whatever fails after;
* `max_units` counts every create that may still be charged as spent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from backdrop.errors import AmbiguousCreate, AuthError, BackdropError, ClaimLost, CreditInsufficiency, EngineError
from backdrop.files import copy_atomic
from backdrop.pipeline import reconcile
from backdrop.pipeline.budget import Budget
from backdrop.pipeline.feature import created_under
from backdrop.pipeline.outcomes import ItemResult, named_like, now_iso
from backdrop.pipeline.plan import WorkItem
from backdrop.pipeline.steps import Steps, file_sha256, is_public_url
from backdrop.settings import InputMode
from backdrop.store.ledger import Ledger, LedgerEntry

__all__ = ["RowLifecycle"]

log = logging.getLogger("backdrop.pipeline.lifecycle")


Spend = Literal["free", "maybe", "charged"]


@dataclass
class RowLifecycle:
    """What every picture of one run shares: ledger, budget, output names, the stop signal."""

    steps: Steps
    ledger: Ledger
    environment: str
    key_id: str | None
    run_id: str
    deployment: str | None
    input_mode: InputMode
    dry_run: bool
    budget: Budget
    names: dict[int, Path]
    units_per_task: int
    create_window: float
    #: set by the first error that makes every further create pointless (no units, key refused)
    stop: dict[str, str] = field(default_factory=dict)
    feature: str | None = None  # the slug creates are sent under, recorded by each claim (polls use the row's)

    async def run(self, item: WorkItem) -> ItemResult:
        """This picture's outcome, whatever happens: the row boundary."""
        started, t0 = now_iso(), time.monotonic()
        trace = {"stage": "ledger"}
        try:
            result = await self._process(item, trace)
        except BackdropError as exc:  # any domain error becomes this row's outcome
            result = self._failure(exc, stage=trace["stage"])
            result.units = self._charged_here(item)
        except Exception as exc:  # the one broad catch: no row may sink the batch
            log.exception("row %s: unexpected error at %s", item.primary.row_id, trace["stage"])
            result = self._unexpected(item, exc, trace["stage"])
        # a charge this run holds but the result lost: an error after the charge, or one taken over (ask the
        # ledger only then: a reused or skipped row on a re-run costs no query)
        if not result.units and (result.status != "succeeded" or "adopted" in trace) and (
                units := self._charged_here(item)):
            result.units = units  # this run holds the charge (it saw the success, or took it over): report it
            result.note = "; ".join(filter(None, [result.note, trace.get("adopted")]))
        result.started_at, result.finished_at = started, now_iso()
        result.seconds = round(time.monotonic() - t0, 3)
        return result

    async def _process(self, item: WorkItem, trace: dict[str, str]) -> ItemResult:
        dest = self.names[item.primary.line]
        entry = self.ledger.latest(item.key)
        if entry and self.ledger.take_over_charge(entry, self.run_id):
            trace["adopted"] = (f"charged in run {entry.charged_run_id}, which ended before writing its report: "
                                "this report carries the charge")
            entry = self.ledger.latest(item.key)
            assert entry is not None  # noqa: S101 - the ledger holds the row it just took over (narrows the type)
        if entry and entry.status == "succeeded":
            return await self._reuse(item, entry, dest, trace)
        if entry and entry.task_id and entry.status in ("created", "pending_reconcile"):
            return await self._finish(item, entry, dest, trace, attempts=0, first_delay=0.0)
        if entry and entry.status in reconcile.LOST and not entry.task_id:
            if not reconcile.is_lost(entry, create_window=self.create_window, now=datetime.now(UTC)):
                return await self._follow(item, entry.attempt, dest, trace)  # another run is sending it now
            return self._pending(entry)
        if self.dry_run:
            return ItemResult(status="skipped", error_code="dry_run", note=f"would cost {self.units_per_task} units")
        if self.stop:
            code, why = next(iter(self.stop.items()))
            return ItemResult(status="skipped", error_code=code, message=f"not attempted: {why}")
        if not await self.budget.reserve():
            return ItemResult(status="skipped", error_code="budget_exhausted",
                              message=f"max_units={self.budget.max_units} reached; not attempted")
        attempt = entry.attempt + 1 if entry else 1
        spend: list[Spend] = ["free"]
        try:
            return await self._create_and_finish(item, attempt, dest, trace, spend)
        finally:
            await self.budget.settle(spent=spend[0] != "free")

    def _pending(self, entry: LedgerEntry) -> ItemResult:
        note = None
        if entry.error_message and entry.error_message.startswith("candidate charges:"):
            note = (f"{entry.error_message}; settle it with `backdrop reconcile {entry.content_key[:12]} --task "
                    "<task id>` (or --not-created, or --recreate)")
        return ItemResult(status="pending_reconcile", stage="create", error_code="ambiguous_create",
                          message="an earlier create got no answer and the vendor's records cannot tell yet "
                                  "whether it made a task; nothing is created again until they do "
                                  "(`backdrop reconcile` settles it by hand)",
                          attempts=0, note=note)

    async def _create_and_finish(self, item: WorkItem, attempt: int, dest: Path, trace: dict[str, str],
                                 spend: list[Spend]) -> ItemResult:
        trace["stage"] = "upload"
        file_id, file_url = await self._source(item)
        if not self.ledger.claim(item.key, attempt, run_id=self.run_id, row_id=item.primary.row_id,
                                 environment=self.environment, deployment=self.deployment,
                                 image_sha256=item.prepared.sha256, prompt=item.prompt,
                                 template_id=item.template_id, key_id=self.key_id, feature=self.feature):
            return await self._follow(item, attempt, dest, trace)
        trace["stage"] = "create"
        spend[0] = "maybe"  # from here the request may leave
        try:
            task_id = await self.steps.create(item, attempt, file_id, file_url)
        except AmbiguousCreate:
            raise
        except ClaimLost as exc:  # another run settled the claim while this create waited to be sent
            spend[0] = "free"
            return ItemResult(status="pending_reconcile", stage="create", error_code=exc.report_code,
                              message=str(exc), attempts=0)
        except BackdropError:
            if self._refused(item, attempt):
                spend[0] = "free"
            raise
        entry = self.ledger.latest(item.key)
        if entry is None or entry.task_id != task_id:  # a cached create of an earlier ledger: record it
            self.ledger.mark(item.key, attempt, status="created", task_id=task_id)
            entry = self.ledger.latest(item.key)
            assert entry is not None  # noqa: S101 - the ledger holds the row it just marked (narrows the type)
        result = await self._finish(item, entry, dest, trace, attempts=1)
        if result.status == "failed" and result.units == 0 and result.stage == "task":
            spend[0] = "free"  # the engine refused it: errors cost nothing
        elif result.units:
            spend[0] = "charged"
        return result

    def _refused(self, item: WorkItem, attempt: int) -> bool:
        """The ledger says the vendor refused this attempt (steps.create_task marks only refusals failed)."""
        entry = self.ledger.latest(item.key)
        return entry is not None and entry.attempt == attempt and entry.status == "failed"

    async def _follow(self, item: WorkItem, attempt: int, dest: Path, trace: dict[str, str]) -> ItemResult:
        """Another run holds this picture's create: wait for its task id and poll that task."""
        deadline = time.monotonic() + self.create_window
        while time.monotonic() < deadline:
            other = self.ledger.latest(item.key)
            if other and other.task_id:
                return await self._finish(item, other, dest, trace, attempts=0, first_delay=0.0)
            if other is None or other.status != "creating" or other.attempt != attempt:
                break
            await asyncio.sleep(0.2)
        return ItemResult(status="pending_reconcile", stage="create", error_code="claimed_elsewhere",
                          message="another run is creating this picture and has no task id yet")

    async def _source(self, item: WorkItem) -> tuple[str | None, str | None]:
        """(file_id, None) after an upload, or (None, url) when the vendor fetches the picture itself."""
        p = item.prepared
        use_url = p.note is None and (
            (self.input_mode == "url" and item.source.startswith(("http://", "https://")))
            or (self.input_mode == "auto" and is_public_url(item.source))
        )
        if use_url:
            return None, item.source
        return await self.steps.upload(item), None

    async def _finish(self, item: WorkItem, entry: LedgerEntry, dest: Path, trace: dict[str, str], *,
                      attempts: int, first_delay: float | None = None) -> ItemResult:
        """Wait for a created task, record the charge, download the picture."""
        ledger, attempt, task_id = self.ledger, entry.attempt, entry.task_id or ""
        trace["stage"] = "poll"
        try:
            # a fresh create: its first poll counts from the create's answer (recorded in the ledger), not from now
            since = 0.0 if first_delay is not None else (datetime.now(UTC) - entry.updated_at).total_seconds()
            polled = await self.steps.wait(task_id, first_delay, created_under(entry), item.primary.row_id,
                                           since_created=since)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the task exists and may be charged
            code = getattr(exc, "report_code", type(exc).__name__)
            ledger.mark(item.key, attempt, status="pending_reconcile", error_code=code)
            return ItemResult(status="pending_reconcile", stage="poll", error_code=code,
                              message=f"the task exists but its end was not seen ({str(exc)[:200]}); the next "
                                      "run polls it again and pays nothing more",
                              task_id=task_id, attempts=attempts)
        st = polled.status
        if st.status == "error":
            err = EngineError(st.error_message or "the engine reported an error", task_id=task_id,
                              error_code=st.error or "unknown_engine_error", request_id=st.request_id)
            ledger.mark(item.key, attempt, status="failed", error_code=err.report_code,
                        error_message=err.message[:500])
            res = self._failure(err, stage="task")
            res.task_id, res.polls, res.attempts = task_id, polled.polls, attempts
            return res
        # The vendor charged at success, whatever follows; exactly one run's report carries the charge.
        charged_here = ledger.record_charge(item.key, attempt, self.units_per_task, self.run_id)
        units = self.units_per_task if charged_here else 0
        trace["stage"] = "download"
        try:
            got = await self.steps.download(task_id, st.result_url, dest, created_under(entry), item.primary.row_id)
        except Exception as exc:  # noqa: BLE001 - paid: the row carries the charge whatever broke
            code = getattr(exc, "report_code", type(exc).__name__)
            return ItemResult(status="failed", stage="download", error_code=code,
                              message=f"{type(exc).__name__}: {str(exc)[:300]}", task_id=task_id,
                              polls=polled.polls, attempts=attempts, units=units,
                              note="paid; the next run downloads it again without paying" if units else
                              "paid in an earlier run; the next run downloads it again without paying")
        ledger.mark(item.key, attempt, status="succeeded", output_path=str(got.path),
                    output_sha256=got.sha256, width=got.width, height=got.height)
        note = item.prepared.note if charged_here else "paid in an earlier run (its report counts the units)"
        if entry.error_code == "attributed":
            note = "; ".join(filter(None, [note, "task id recovered from the credit history after a lost create"]))
        return ItemResult(status="succeeded", task_id=task_id, request_id=st.request_id,
                          attempts=attempts, polls=polled.polls, poll_gap=polled.gap_seconds, units=units,
                          output_path=str(got.path), output_format=got.format, output_sha256=got.sha256,
                          width=got.width, height=got.height, note=note,
                          possible_duplicate=attempt > 1 and self._flagged(item.key))

    async def _reuse(self, item: WorkItem, entry: LedgerEntry, dest: Path, trace: dict[str, str]) -> ItemResult:
        """An earlier run's output; if its file is gone, fetch the result again while the vendor keeps it.
        A paid `succeeded` row is never demoted."""
        src = Path(entry.output_path) if entry.output_path else None
        duplicate = entry.attempt > 1 and self._flagged(entry.content_key)  # only a later attempt can be one
        if src is not None and src.is_file() and file_sha256(src) == entry.output_sha256:
            if src.resolve() != (target := named_like(dest, src))[0].resolve():  # the picture's own extension
                copy_atomic(src, target[0])
            return ItemResult(status="succeeded", task_id=entry.task_id, units=0, reused=True, output_format=target[1],
                              possible_duplicate=duplicate, output_path=str(target[0]),
                              output_sha256=entry.output_sha256, width=entry.width, height=entry.height,
                              note="already done in an earlier run; nothing paid")
        trace["stage"] = "download"
        try:
            st = (await self.steps.wait(entry.task_id or "", 0.0, created_under(entry), item.primary.row_id)).status
            if st.status != "success":
                raise BackdropError(f"the task now says {st.status}")
            got = await self.steps.download(entry.task_id or "", st.result_url, dest, created_under(entry),
                                            item.primary.row_id)
        except Exception as exc:  # noqa: BLE001 - the vendor forgot it, or the file cannot be written
            return ItemResult(
                status="failed", stage="download", error_code="output_lost", task_id=entry.task_id,
                message=f"paid in an earlier run (task {entry.task_id}), but its file is gone and the vendor no "
                        f"longer serves it ({type(exc).__name__}); `backdrop reconcile --recreate "
                        f"{entry.content_key[:12]}` creates it again for {self.units_per_task} units",
                possible_duplicate=duplicate)
        return ItemResult(status="succeeded", task_id=entry.task_id, units=0, reused=True,
                          possible_duplicate=duplicate, output_path=str(got.path), output_format=got.format,
                          output_sha256=got.sha256, width=got.width, height=got.height,
                          note="paid in an earlier run; its file was gone and was downloaded again")

    def _flagged(self, content_key: str) -> bool:
        """A person chose to create this picture again while an earlier create may have been charged."""
        return any(a.error_code == "recreated_by_hand" for a in self.ledger.attempts(content_key))

    def _charged_here(self, item: WorkItem) -> int:
        entry = self.ledger.latest(item.key)
        return self.units_per_task if entry is not None and entry.charged_run_id == self.run_id else 0

    def _unexpected(self, item: WorkItem, exc: Exception, stage: str) -> ItemResult:
        """An error that is not the API's (e.g. Prefect's own API failed): the ledger decides the status."""
        entry = self.ledger.latest(item.key)
        in_flight = entry is not None and entry.status in ("creating", "created", "ambiguous", "pending_reconcile")
        return ItemResult(status="pending_reconcile" if in_flight else "failed", stage=stage,
                          error_code="internal_error", message=f"{type(exc).__name__}: {str(exc)[:300]}",
                          task_id=entry.task_id if entry else None, units=self._charged_here(item))

    def _failure(self, exc: BackdropError, *, stage: str) -> ItemResult:
        if isinstance(exc, CreditInsufficiency):
            self.stop.setdefault("CreditInsufficiency", "the account ran out of units")
        elif isinstance(exc, AuthError):
            self.stop.setdefault("InvalidApiKey", "the API key was refused")
        status = "pending_reconcile" if isinstance(exc, AmbiguousCreate) else "failed"
        return ItemResult(status=status, stage=stage, error_code=exc.report_code,
                          message=exc.message or str(exc), http_status=exc.status,
                          request_id=exc.request_id, attempts=1 if stage != "upload" else 0)
