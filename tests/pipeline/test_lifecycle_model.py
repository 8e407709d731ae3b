"""The money model: a Hypothesis state machine drives the real row lifecycle, the real `steps.create_task` and the
real reconciliation against a fake vendor that loses answers, sends undecodable ones, fails polls and downloads,
crashes runs between steps, runs two batches at once, lets someone else spend on the key, and lists its credit
history in either order, on a clock in another zone.

After every step:
* per picture (content key), the vendor charged at most once;
* no charge is in two report rows, and no one else's charge is in any;
* every row of a run that finished is reported exactly once;
* no run created more than its `max_units` allow;
* no row holds another picture's task.
At the end, after clean runs, every charge of ours is in exactly one report row, or is named as a candidate of a
row left pending for a person.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule  # noqa: E402

from backdrop.client.models import CreatedTask, CreditHistoryEntry, DownloadedFile, TaskStatus  # noqa: E402
from backdrop.errors import (  # noqa: E402
    ClaimLost,
    InvalidParameters,
    InvalidTaskId,
    OutcomeUnknown,
    PollDeadlineExceeded,
    ServerError,
)
from backdrop.pipeline import reconcile, steps  # noqa: E402
from backdrop.pipeline.budget import Budget  # noqa: E402
from backdrop.pipeline.history import UNTARGETED  # noqa: E402
from backdrop.pipeline.inputs import InputRow  # noqa: E402
from backdrop.pipeline.lifecycle import RowLifecycle  # noqa: E402
from backdrop.pipeline.outcomes import ItemResult  # noqa: E402
from backdrop.pipeline.plan import WorkItem  # noqa: E402
from backdrop.pipeline.preflight import PreparedInput  # noqa: E402
from backdrop.pipeline.reconcile import settle_in_run  # noqa: E402
from backdrop.store.ledger import Ledger  # noqa: E402

UNITS = 4
IMAGES = ["img-a", "img-b", "img-c"]
PROMPTS = ["beach", "studio"]
CONTENTS = [(i, p) for i in IMAGES for p in PROMPTS]
SETTLE_AFTER = 0.05
DEAD = f"{socket.gethostname()}:999999999"  # a process of this host that is gone


class Crash(BaseException):
    """The process dies here: nothing after it runs, nothing is reported."""


@dataclass
class VTask:
    task_id: str
    content: tuple[str, str] | None  # None: someone else's
    outcome: str  # success | error
    polls_left: int
    run_id: str | None


@dataclass
class FakeVendor:
    """The vendor's side: tasks, charges, the credit history. Its clock is ours shifted by `offset`."""

    newest_first: bool = True
    offset: timedelta = timedelta(0)
    garble: bool = False  # new charges' history entries lose their task id, or their units read as 0
    garbled: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, VTask] = field(default_factory=dict)
    charges: list[tuple[str, datetime, str]] = field(default_factory=list)  # (entry id, time, task id)
    n: int = 0

    def make(self, content: tuple[str, str] | None, outcome: str, run_id: str | None, polls: int) -> VTask:
        self.n += 1
        t = VTask(f"task-{self.n}", content, outcome, polls, run_id)
        self.tasks[t.task_id] = t
        if outcome == "success":  # charged at success; the model's tasks succeed well inside the window
            self.charges.append((f"h{self.n}", datetime.now(UTC) + self.offset, t.task_id))
            if self.garble:
                self.garbled[t.task_id] = "no_target" if self.n % 2 else "no_units"
        return t

    def charges_of(self, content: tuple[str, str]) -> list[str]:
        return [tid for _, _, tid in self.charges if self.tasks[tid].content == content]

    async def history_page(self, token: str | None) -> tuple[list[CreditHistoryEntry], str | None]:
        rows = sorted(self.charges, key=lambda c: c[1], reverse=self.newest_first)
        start = int(token or 0)
        page = [CreditHistoryEntry(id=i, timestamp=ts, action="change_background",
                                   target_id=None if self.garbled.get(tid) == "no_target" else tid,
                                   units=0 if self.garbled.get(tid) == "no_units" else -UNITS)
                for i, ts, tid in rows[start:start + 3]]
        return page, (str(start + 3) if start + 3 < len(rows) else None)

    async def show(self, task_ids: list[str]) -> None:
        return None

    async def picture_verdict(self, task_id: str, entry: Any) -> str:
        t = self.tasks.get(task_id)
        if t is None or t.content is None:
            return "no"
        if t.content[0] != entry.image_sha256:
            return "no"
        # the same product: a match, though the picture check cannot always tell
        digest = hashlib.sha256(f"{task_id}{entry.id}".encode()).digest()
        return "unknown" if digest[0] % 4 == 0 else "match"


@dataclass
class Plan:
    """What goes wrong in one run, drawn by Hypothesis: a fault per call, by call number."""

    create: list[str]
    poll: list[str]
    download: list[str]
    upload: list[str]
    engine: list[str]
    crash_at: int | None

    def take(self, seq: list[str], default: str = "ok") -> str:
        return seq.pop(0) if seq else default


class FakeClient:
    """Stands in for BackdropClient.create_task inside the real `steps.create_task`."""

    def __init__(self, vendor: FakeVendor, item: WorkItem, run: Run) -> None:
        self.vendor, self.item, self.run = vendor, item, run

    async def create_task(self, *, before_send: Any = None, **_: Any) -> CreatedTask:
        if before_send is not None and not before_send():
            raise ClaimLost("settled by another run before sending")
        fault = self.run.plan.take(self.run.plan.create)
        if fault == "refused":
            raise InvalidParameters("refused", status=400, refused=True)
        if fault == "dropped":  # the request never reached the engine, the answer says nothing
            raise OutcomeUnknown("connection dropped after sending")
        outcome = self.run.plan.take(self.run.plan.engine, "success")
        t = self.vendor.make((self.item.prepared.sha256, self.item.prompt or ""), outcome, self.run.run_id,
                             polls=self.vendor.n % 2)
        self.run.created.append(t.task_id)
        if fault == "lost":
            raise OutcomeUnknown("the answer was lost")
        if fault == "undecodable":
            raise ValueError("Error -3 while decompressing data: incorrect header check")
        if fault == "crash":
            raise Crash
        return CreatedTask(task_id=t.task_id)


@dataclass
class Run:
    run_id: str
    plan: Plan
    max_units: int | None
    created: list[str] = field(default_factory=list)


class FakeSteps:
    def __init__(self, vendor: FakeVendor, ledger: Ledger, run: Run, out: Path) -> None:
        self.vendor, self.ledger, self.run, self.out = vendor, ledger, run, out
        self.calls = 0

    def _tick(self) -> None:
        self.calls += 1
        if self.run.plan.crash_at is not None and self.calls == self.run.plan.crash_at:
            raise Crash

    async def upload(self, item: WorkItem) -> str:
        self._tick()
        if self.run.plan.take(self.run.plan.upload) == "5xx":
            raise ServerError("upload failed", status=503)
        return f"file-{item.prepared.sha256}"

    async def create(self, item: WorkItem, attempt: int, file_id: str | None, file_url: str | None) -> str:
        self._tick()
        client: Any = FakeClient(self.vendor, item, self.run)
        return await steps.create_task(client, self.ledger, key=item.key, attempt=attempt, src_file_id=file_id,
                                       src_file_url=file_url, prompt=item.prompt, template_id=None,
                                       task_type="prompt")

    async def wait(self, task_id: str, first_delay: float | None, feature: str, label: str = "",
                   since_created: float = 0.0) -> steps.PollResult:
        self._tick()
        if feature != "bg-replace":  # every run creates under bg-replace: a task answers only under its slug
            raise InvalidTaskId("Invalid task ID", status=400)
        fault = self.run.plan.take(self.run.plan.poll)
        if fault == "5xx":
            raise ServerError("poll failed", status=502)
        if fault == "deadline":
            raise PollDeadlineExceeded("still running", task_id=task_id)
        t = self.vendor.tasks.get(task_id)
        if t is None or fault == "forgotten":
            raise InvalidTaskId("Invalid task ID", status=400)
        status = "success" if t.outcome == "success" else "error"
        return steps.PollResult(
            status=TaskStatus(task_id=task_id, status=status, result_url=f"https://r/{task_id}",
                              error="error_inference" if status == "error" else None), polls=1)

    async def download(self, task_id: str, result_url: str | None, dest: Path, feature: str,
                       label: str = "") -> DownloadedFile:
        self._tick()
        if self.run.plan.take(self.run.plan.download) == "oserror":
            raise OSError(28, "No space left on device")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(task_id.encode())
        digest = hashlib.sha256(task_id.encode()).hexdigest()
        return DownloadedFile(path=dest, sha256=digest, size=len(task_id), format="jpeg", width=1, height=1)


FAULTS = st.fixed_dictionaries({
    "create": st.lists(st.sampled_from(["ok", "ok", "lost", "dropped", "refused", "undecodable", "crash"]),
                       max_size=6),
    "poll": st.lists(st.sampled_from(["ok", "ok", "5xx", "deadline", "forgotten"]), max_size=6),
    "download": st.lists(st.sampled_from(["ok", "ok", "oserror"]), max_size=4),
    "upload": st.lists(st.sampled_from(["ok", "ok", "5xx"]), max_size=3),
    "engine": st.lists(st.sampled_from(["success", "success", "error"]), max_size=4),
    "crash_at": st.none() | st.integers(1, 12),
})
BATCH = st.lists(st.sampled_from(CONTENTS), min_size=1, max_size=6)


class MoneyModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="backdrop-model-"))
        self.ledger = Ledger(f"sqlite:///{self.dir / 'ledger.db'}")
        self.vendor = FakeVendor()
        self.reports: list[list[tuple[WorkItem, ItemResult]]] = []
        self.runs: list[Run] = []
        self.runs_done = 0
        self.broken = False  # a step failed: teardown reports nothing of its own over it

    @initialize(hours=st.sampled_from([0, 9, -8]), old=st.integers(0, 4), tied=st.booleans())
    def vendor_clock(self, hours: int, old: int, tied: bool) -> None:
        """The history's time stamps in another zone (a vendor writing local time as UTC), for good; and an account
        with a past: someone else's charges from a month ago, older than any window, at one instant or spread."""
        self.vendor.offset = timedelta(hours=hours)
        base = datetime.now(UTC) + self.vendor.offset
        for d in range(old):
            self.vendor.make(None, "success", None, polls=0)
            i, _, tid = self.vendor.charges[-1]
            self.vendor.charges[-1] = (i, base - timedelta(days=30 if tied else 30 - d), tid)

    @rule(on=st.booleans())
    def vendor_garbles_history(self, on: bool) -> None:
        """From now on, history entries of new charges lose their task id or their units (or stop doing so)."""
        self.vendor.garble = on

    @rule(newest_first=st.booleans())
    def vendor_lists_history(self, newest_first: bool) -> None:
        self.vendor.newest_first = newest_first

    @rule()
    def someone_else_spends(self) -> None:
        self.vendor.make(None, "success", None, polls=0)

    @rule(batch=BATCH, faults=FAULTS, max_units=st.none() | st.integers(0, 12))
    def run_batch(self, batch: list[tuple[str, str]], faults: dict[str, Any], max_units: int | None) -> None:
        asyncio.run(self._run(batch, faults, max_units))

    @rule(a=BATCH, b=BATCH, fa=FAULTS, fb=FAULTS)
    def two_runs_at_once(self, a: list[tuple[str, str]], b: list[tuple[str, str]], fa: dict[str, Any],
                         fb: dict[str, Any]) -> None:
        async def both() -> None:
            await asyncio.gather(self._run(a, fa, None), self._run(b, fb, None))

        asyncio.run(both())

    async def _run(self, batch: list[tuple[str, str]], faults: dict[str, Any], max_units: int | None) -> None:
        plan = Plan(**{k: list(v) if isinstance(v, list) else v for k, v in faults.items()})
        run = Run(run_id=f"run-{len(self.runs)}", plan=plan, max_units=max_units)
        self.runs.append(run)
        fake = FakeSteps(self.vendor, self.ledger, run, self.dir / run.run_id)
        items = _items(batch)
        names = {i.primary.line: self.dir / run.run_id / f"{i.primary.line}.jpg" for i in items}
        life = RowLifecycle(steps=fake, ledger=self.ledger, environment="env", key_id="key", run_id=run.run_id,
                            deployment=None, input_mode="upload", dry_run=False,
                            budget=Budget(max_units, UNITS), names=names, units_per_task=UNITS,
                            create_window=0.3, feature="bg-replace")

        async def settle() -> reconcile.Settlement:
            later = datetime.now(UTC) + timedelta(seconds=5)  # as if the run waited for the windows to close
            return await reconcile.settle_lost_creates(self.vendor, self.ledger, environment="env", key_id="key",
                                                       settle_after=SETTLE_AFTER, create_window=0.3, now=later)

        try:
            await settle()
            results = await _gather_or_crash([_row(life, i) for i in items])
            results = await settle_in_run(life, results, settle, wait_seconds=5, settle_after=SETTLE_AFTER)
        except Crash:
            # the process died before its report: what it held now belongs to a dead process
            for e in self.ledger.entries():
                if e.status == "creating" and e.run_id == run.run_id:
                    self.ledger.mark(e.content_key, e.attempt, owner=DEAD)
                if e.charged_run_id == run.run_id:
                    self.ledger.mark(e.content_key, e.attempt, charged_owner=DEAD)
            return
        self.broken = len(results) != len(items) or sorted(i.key for i, _ in results) != sorted(i.key for i in items)
        assert len(results) == len(items), "a row was lost"
        assert sorted(i.key for i, _ in results) == sorted(i.key for i in items), "a row reported twice"
        self.reports.append(results)
        self.ledger.mark_reported(run.run_id, {r.task_id for _, r in results if r.task_id and r.units})
        self.runs_done += 1

    # ---- invariants ----------------------------------------------------------------------------------------

    def check(self) -> None:
        self.broken = True  # cleared only if every check below passes
        self.paid_at_most_once_per_picture()
        self.no_charge_in_two_rows()
        self.rows_hold_their_own_picture()
        self.max_units_hold()
        self.broken = False

    @invariant()
    def all_invariants(self) -> None:
        self.check()

    def paid_at_most_once_per_picture(self) -> None:
        for content in CONTENTS:
            assert len(self.vendor.charges_of(content)) <= 1, f"{content} charged twice"

    def no_charge_in_two_rows(self) -> None:
        reported: dict[str, int] = {}
        for results in self.reports:
            for _, r in results:
                if r.units:
                    assert r.task_id, "units without a task"
                    reported[r.task_id] = reported.get(r.task_id, 0) + 1
        for task_id, n in reported.items():
            assert n == 1, f"{task_id} reported {n} times"
            assert self.vendor.tasks[task_id].content is not None, "someone else's charge in our report"
            assert task_id in {tid for _, _, tid in self.vendor.charges}, "units for a task never charged"

    def rows_hold_their_own_picture(self) -> None:
        for results in self.reports:
            for item, r in results:
                if r.status == "succeeded" and r.task_id:
                    t = self.vendor.tasks[r.task_id]
                    assert t.content == (item.prepared.sha256, item.prompt), "a row holds another's picture"

    def max_units_hold(self) -> None:
        for run in self.runs:
            if run.max_units is not None:
                charged = sum(UNITS for tid in run.created if self.vendor.tasks[tid].outcome == "success")
                assert charged <= run.max_units, f"{run.run_id} spent {charged} > {run.max_units}"

    def teardown(self) -> None:
        try:
            if self.broken:
                return
            # clean runs settle what the records can tell; then every charge of ours is reported once
            for _ in range(2):
                asyncio.run(self._run(CONTENTS, {"create": [], "poll": [], "download": [], "upload": [],
                                                 "engine": ["success"] * 6, "crash_at": None}, None))
            self.check()
            last = {i.key: r for i, r in self.reports[-1]}
            reported = {r.task_id for results in self.reports for _, r in results if r.units}
            candidates = " ".join((r.note or "").replace(";", " ") for r in last.values()
                                  if r.status == "pending_reconcile")
            for entry_id, _, task_id in self.vendor.charges:
                if self.vendor.tasks[task_id].content is None:
                    continue
                # a pending row names a charge by its task id, or by its history entry when that lacks one
                named = task_id in candidates.split() or f"{UNTARGETED}{entry_id}" in candidates.split()
                assert task_id in reported or named, f"charge {task_id} in no report"
        finally:
            self.ledger.engine.dispose()


async def _gather_or_crash(coros: list[Any]) -> list[tuple[WorkItem, ItemResult]]:
    """All rows of a run; a crash in one stops them all, as the death of the process would."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except Crash:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _row(life: RowLifecycle, item: WorkItem) -> tuple[WorkItem, ItemResult]:
    return item, await life.run(item)


def _items(batch: list[tuple[str, str]]) -> list[WorkItem]:
    items: dict[str, WorkItem] = {}
    for line, (image, prompt) in enumerate(batch, start=1):
        key = hashlib.sha256(f"{image}\n{prompt}".encode()).hexdigest()
        prepared = PreparedInput(path=f"/nonexistent/{image}.jpg", sha256=image, content_type="image/jpeg",
                                 width=10, height=10, size=10)
        row = InputRow(line=line, row_id=f"r{line}", image_url=f"{image}.jpg", prompt=prompt, template_id=None)
        items.setdefault(key, WorkItem(key=key, prepared=prepared, source=row.image_url, task_type="prompt",
                                       prompt=prompt, template_id=None)).rows.append(row)
    return list(items.values())


MoneyModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("BACKDROP_MODEL_EXAMPLES", "60")),
    stateful_step_count=8,
    deadline=None,
    derandomize=True,  # seeded: the same cases every run; raise BACKDROP_MODEL_EXAMPLES to explore further
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMoneyModel = MoneyModel.TestCase
