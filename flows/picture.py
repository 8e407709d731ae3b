"""One picture of a batch, from the ledger's verdict to its outcome; the flow runs many of these at once.

    ledger says done?  -> reuse the output, pay nothing
    ledger has a task? -> poll it (resume), never re-create
    another run is creating it -> follow that run's task
    else               -> reserve units -> upload -> claim (ledger) -> create -> wait -> download

Every domain error becomes this picture's outcome (`run` is the row boundary); the ledger decides what an
unexpected error means for money.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from backdrop import batch, steps
from backdrop.batch import Budget, InputMode, ItemResult, WorkItem
from backdrop.errors import (
    AmbiguousCreate,
    AuthError,
    BackdropError,
    CreditInsufficiency,
    EngineError,
    InvalidTaskId,
    PollDeadlineExceeded,
)
from backdrop.ledger import Ledger, LedgerEntry, owner_alive
from backdrop.outputs import copy_atomic
from backdrop.settings import BackdropSettings
from tasks.create import create_background_task
from tasks.download import download_result
from tasks.upload import upload_input
from tasks.wait import wait_for_result


@dataclass
class PictureRunner:
    """What every picture of one run shares: settings, ledger, budget, output names, the stop signal."""

    settings: BackdropSettings
    ledger: Ledger
    ledger_url: str
    environment: str
    run_id: str
    deployment: str | None
    input_mode: InputMode
    dry_run: bool
    budget: Budget
    names: dict[int, Path]
    #: set by the first error that makes every further create pointless (no units, key refused)
    stop: dict[str, str] = field(default_factory=dict)

    @property
    def create_window(self) -> float:
        """A create call lasts no longer than its timeouts, twice over."""
        return 2 * (self.settings.connect_timeout_seconds + self.settings.read_timeout_seconds)

    async def run(self, item: WorkItem) -> ItemResult:
        """This picture's outcome, whatever happens: the row boundary."""
        started, t0 = batch.now_iso(), time.monotonic()
        trace = {"stage": "ledger"}
        try:
            result = await self._process(item, trace)
        except BackdropError as exc:  # any domain error becomes this row's outcome
            result = self._failure(exc, stage=trace["stage"])
        except Exception as exc:  # noqa: BLE001 - the one broad catch: no row may sink the batch
            get_run_logger().exception("row %s: unexpected error at %s", item.primary.row_id, trace["stage"])
            result = self._unexpected(item, exc, trace["stage"])
        result.started_at, result.finished_at = started, batch.now_iso()
        result.seconds = round(time.monotonic() - t0, 3)
        return result

    async def _process(self, item: WorkItem, trace: dict[str, str]) -> ItemResult:
        dest = self.names[item.primary.line]
        entry = self.ledger.latest(item.key)
        if entry and entry.status == "succeeded":
            reused = self._reuse(entry, dest)
            if reused:
                return reused
        if entry and entry.task_id and entry.status in ("created", "pending_reconcile", "succeeded"):
            return await self._finish(item, entry.attempt, entry.task_id, dest, trace, attempts=0,
                                      first_delay=0.0)
        if entry and entry.status == "creating" and self._fresh(entry):
            return await self._follow(item, entry.attempt, dest, trace)  # another run is creating it now
        if entry and entry.status in ("creating", "ambiguous"):
            return ItemResult(status="pending_reconcile", stage="create", error_code="ambiguous_create",
                              message="an earlier create got no answer; reconcile before paying again",
                              attempts=0)
        if self.dry_run:
            return ItemResult(status="skipped", error_code="dry_run",
                              note=f"would cost {self.settings.units_per_task} units")
        if self.stop:
            code, why = next(iter(self.stop.items()))
            return ItemResult(status="skipped", error_code=code, message=f"not attempted: {why}")
        if not await self.budget.reserve():
            return ItemResult(status="skipped", error_code="budget_exhausted",
                              message=f"max_units={self.budget.max_units} reached; not attempted")
        attempt = entry.attempt + 1 if entry else 1
        duplicate_risk = bool(entry and entry.error_code == "ambiguous_recreated")
        charged = False
        try:
            result = await self._create_and_finish(item, attempt, dest, trace)
            charged = result.units > 0
            if duplicate_risk:
                result.possible_duplicate = True
                result.note = "; ".join(filter(None, [result.note, "re-created after a lost create: "
                                                      "the vendor may have charged twice"]))
            return result
        finally:
            await self.budget.settle(charged)

    async def _create_and_finish(self, item: WorkItem, attempt: int, dest: Path,
                                 trace: dict[str, str]) -> ItemResult:
        trace["stage"] = "upload"
        file_id, file_url = await self._source(item)
        if not self.ledger.claim(item.key, attempt, run_id=self.run_id, row_id=item.primary.row_id,
                                 environment=self.environment, deployment=self.deployment,
                                 image_sha256=item.prepared.sha256, prompt=item.prompt,
                                 template_id=item.template_id):
            return await self._follow(item, attempt, dest, trace)
        trace["stage"] = "create"
        task_id = await create_background_task(
            item.key, attempt, self.settings.feature, self.ledger_url, file_id, file_url, item.prompt,
            item.template_id, item.task_type)
        return await self._finish(item, attempt, task_id, dest, trace, attempts=1)

    def _fresh(self, entry: LedgerEntry) -> bool:
        """A `creating` row of a live run: its process is alive (this host) and it is younger than any
        create call can last."""
        if owner_alive(entry.owner) is False:
            return False  # its run was killed: the create is lost, not in progress
        age = (datetime.now(UTC) - entry.updated_at.replace(tzinfo=UTC)).total_seconds()
        return age < self.create_window

    async def _follow(self, item: WorkItem, attempt: int, dest: Path, trace: dict[str, str]) -> ItemResult:
        """Another run holds this picture's create: wait for its task id and poll that task."""
        deadline = time.monotonic() + self.create_window
        while time.monotonic() < deadline:
            other = self.ledger.latest(item.key)
            if other and other.task_id:
                return await self._finish(item, other.attempt, other.task_id, dest, trace, attempts=0,
                                          first_delay=0.0)
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
            or (self.input_mode == "auto" and batch.is_public_url(item.source))
        )
        if use_url:
            return None, item.source
        file_id = await upload_input(p.sha256, p.path, p.content_type, self.settings.feature, self.environment,
                                     self.settings.upload_route)
        return file_id, None

    async def _finish(self, item: WorkItem, attempt: int, task_id: str, dest: Path, trace: dict[str, str],
                      *, attempts: int, first_delay: float | None = None) -> ItemResult:
        """Wait for a created task, record the charge, download the picture."""
        ledger, units_per_task = self.ledger, self.settings.units_per_task
        trace["stage"] = "poll"
        try:
            polled = await wait_for_result(task_id, self.settings.feature, self.run_id, first_delay)
        except (PollDeadlineExceeded, InvalidTaskId) as exc:
            ledger.mark(item.key, attempt, status="pending_reconcile", error_code=exc.report_code)
            return ItemResult(status="pending_reconcile", stage="poll", error_code=exc.report_code,
                              message=str(exc), task_id=task_id, attempts=attempts)
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
        charged_here = ledger.record_charge(item.key, attempt, units_per_task, self.run_id)
        units = units_per_task if charged_here else 0
        trace["stage"] = "download"
        try:
            got = await download_result(task_id, st.result_url, str(dest), self.settings.feature)
        except BackdropError as exc:
            ledger.mark(item.key, attempt, status="pending_reconcile", error_code=exc.report_code)
            res = self._failure(exc, stage="download")
            res.status, res.units, res.task_id, res.polls = "pending_reconcile", units, task_id, polled.polls
            return res
        ledger.mark(item.key, attempt, status="succeeded", output_path=str(got.path),
                    output_sha256=got.sha256, width=got.width, height=got.height)
        return ItemResult(status="succeeded", task_id=task_id, request_id=st.request_id,
                          attempts=attempts, polls=polled.polls, poll_gap=polled.gap_seconds, units=units,
                          output_path=str(got.path), output_sha256=got.sha256, width=got.width,
                          height=got.height, note=item.prepared.note if charged_here else
                          "paid for by another run of Backdrop (its report counts the units)")

    def _reuse(self, entry: LedgerEntry, dest: Path) -> ItemResult | None:
        """An earlier run's output, if it is still there and intact."""
        src = Path(entry.output_path) if entry.output_path else None
        if src is None or not src.is_file() or steps.file_sha256(src) != entry.output_sha256:
            return None
        if src.resolve() != dest.resolve():
            copy_atomic(src, dest)
        duplicate = any(a.error_code == "ambiguous_recreated" for a in self.ledger.attempts(entry.content_key))
        return ItemResult(status="succeeded", task_id=entry.task_id, units=0, reused=True,
                          possible_duplicate=duplicate,
                          output_path=str(dest), output_sha256=entry.output_sha256,
                          width=entry.width, height=entry.height,
                          note="already done in an earlier run; nothing paid")

    def _unexpected(self, item: WorkItem, exc: Exception, stage: str) -> ItemResult:
        """An error that is not the API's (e.g. Prefect's own API failed): the ledger decides the status."""
        entry = self.ledger.latest(item.key)
        in_flight = entry is not None and entry.status in ("creating", "created", "ambiguous")
        return ItemResult(status="pending_reconcile" if in_flight else "failed", stage=stage,
                          error_code="internal_error", message=f"{type(exc).__name__}: {str(exc)[:300]}",
                          task_id=entry.task_id if entry else None)

    def _failure(self, exc: BackdropError, *, stage: str) -> ItemResult:
        if isinstance(exc, CreditInsufficiency):
            self.stop.setdefault("CreditInsufficiency", "the account ran out of units")
        elif isinstance(exc, AuthError):
            self.stop.setdefault("InvalidApiKey", "the API key was refused")
        status = "pending_reconcile" if isinstance(exc, AmbiguousCreate) else "failed"
        return ItemResult(status=status, stage=stage, error_code=exc.report_code,
                          message=exc.message or str(exc), http_status=exc.status,
                          request_id=exc.request_id, attempts=1 if stage != "upload" else 0)


def api_requests(traffic: dict[str, Any]) -> int:
    """API requests spent on pictures: uploads, creates and polls (not the end-of-run credit check)."""
    return sum(int(traffic["requests"].get(r, 0)) for r in ("file", "create", "poll"))
