"""Plain batch bookkeeping for the flow: grouping rows into paid work items, the unit budget.

No Prefect here: the flow composes these with the tasks.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from backdrop.fences import redact_url
from backdrop.files import copy_atomic, safe_stem
from backdrop.pipeline.inputs import MAX_PROMPT_CHARS, InputRow, normalise_prompt
from backdrop.pipeline.preflight import InputRejected, PreparedInput
from backdrop.report.table import RowOutcome

__all__ = [
    "Budget",
    "ItemResult",
    "WorkItem",
    "check_prompt",
    "group_rows",
    "is_public_url",
    "now_iso",
    "output_names",
    "row_outcomes",
]

InputMode = Literal["upload", "url", "auto"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_public_url(source: str) -> bool:
    """True for an http(s) URL whose host the vendor could reach (not loopback, private or local)."""
    parsed = urlparse(source)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    host = parsed.hostname
    if host == "localhost" or host.endswith((".local", ".internal", ".localhost")):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return ip.is_global


def check_prompt(row: InputRow) -> InputRejected | None:
    """A row needs a prompt or a template; prompts have a sane length (once normalised, as they are sent)."""
    if row.template_id:
        return None
    prompt = normalise_prompt(row.prompt)
    if not prompt:
        return InputRejected("prompt_missing", "the row has neither a prompt nor a template_id")
    if len(prompt) > MAX_PROMPT_CHARS:
        return InputRejected(
            "prompt_too_long", f"prompt is {len(prompt)} characters (limit {MAX_PROMPT_CHARS})"
        )
    return None


@dataclass
class WorkItem:
    """One paid picture: a unique (image bytes, prompt/template) with every row that asked for it."""

    key: str
    prepared: PreparedInput
    source: str
    task_type: Literal["prompt", "template"]
    prompt: str | None
    template_id: str | None
    rows: list[InputRow] = field(default_factory=list)

    @property
    def primary(self) -> InputRow:
        return self.rows[0]


@dataclass
class ItemResult:
    """How a work item ended; every row of the item is reported from it."""

    status: str
    stage: str | None = None
    error_code: str | None = None
    message: str | None = None
    http_status: int | None = None
    task_id: str | None = None
    request_id: str | None = None
    attempts: int = 0
    polls: int = 0
    poll_gap: float | None = None  # PollResult.gap_seconds of the poll that found the task ended
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    units: int = 0
    output_path: str | None = None
    output_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    reused: bool = False
    possible_duplicate: bool = False
    note: str | None = None


def group_rows(
    rows: list[InputRow],
    prepared: dict[str, PreparedInput | InputRejected],
    key_fn: Callable[[PreparedInput, InputRow, str], str],
) -> tuple[list[WorkItem], dict[int, InputRejected]]:
    """Group good rows into work items by content key; return rejected rows by line."""
    items: dict[str, WorkItem] = {}
    rejected: dict[int, InputRejected] = {}
    for row in rows:
        problem = check_prompt(row)
        found = prepared.get(row.image_url)
        if problem is None and isinstance(found, InputRejected):
            problem = found
        if problem is not None or found is None:
            rejected[row.line] = problem or InputRejected("input_missing", "image was not prepared")
            continue
        assert isinstance(found, PreparedInput)
        task_type: Literal["prompt", "template"] = "template" if row.template_id else "prompt"
        key = key_fn(found, row, task_type)
        if key not in items:
            items[key] = WorkItem(
                key=key, prepared=found, source=row.image_url, task_type=task_type,
                prompt=normalise_prompt(row.prompt) if task_type == "prompt" else None,  # what is sent
                template_id=row.template_id if task_type == "template" else None,
            )
        items[key].rows.append(row)
    return list(items.values()), rejected


def output_names(rows: list[InputRow], out_dir: Path) -> dict[int, Path]:
    """A distinct output path per row, from its id; a repeated id gets its line number appended.

    Unique by construction, compared case-folded (on macOS and Windows `Mug.jpg` and `mug.jpg` are one file): a
    name is given only once it is checked free, so a suffixed name cannot land on another row's own id either
    (ids `a-line3`, `a`, `a`: line 3 gets `a-line3-2`, not line 1's file)."""
    taken: set[str] = set()
    names: dict[int, Path] = {}
    for row in rows:
        base = stem = safe_stem(row.row_id)
        if stem.casefold() in taken:
            base = stem = f"{stem}-line{row.line}"
        n = 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.casefold())
        names[row.line] = out_dir / f"{stem}.jpg"
    return names


class Budget:
    """`max_units` for one run: units are reserved before each create, so concurrency cannot overshoot, and a
    create that may still be charged (its answer was lost, its task's end was not seen) counts as spent."""

    def __init__(self, max_units: int | None, units_per_task: int) -> None:
        self.max_units = max_units
        self.units_per_task = units_per_task
        self.reserved = 0
        self.spent = 0
        self._lock = asyncio.Lock()

    async def reserve(self) -> bool:
        async with self._lock:
            if self.max_units is not None:
                if self.spent + self.reserved + self.units_per_task > self.max_units:
                    return False
            self.reserved += self.units_per_task
            return True

    async def settle(self, *, spent: bool) -> None:
        """End a reservation: `spent` when the vendor charged it or still may."""
        async with self._lock:
            self.reserved -= self.units_per_task
            if spent:
                self.spent += self.units_per_task

    async def refund(self) -> None:
        """A create counted as spent turned out never to have been made (the credit history says so)."""
        async with self._lock:
            self.spent = max(0, self.spent - self.units_per_task)


def row_outcomes(rows: list[InputRow], rejected: dict[int, InputRejected],
                 results: list[tuple[WorkItem, ItemResult]], names: dict[int, Path],
                 unit_price: float) -> list[RowOutcome]:
    """Exactly one outcome per input row: rejected rows, then each work item's rows (its duplicates reuse
    the first row's picture and pay nothing)."""
    out: list[RowOutcome] = []
    for row in rows:
        if row.line in rejected:
            exc = rejected[row.line]
            out.append(RowOutcome(line=row.line, row_id=row.row_id, input=redact_url(row.image_url), prompt=row.prompt,
                                  template_id=row.template_id, status="failed", failed_stage="preflight",
                                  error_code=exc.report_code, error_message=exc.message,
                                  http_status=exc.status, extra=row.extra))
    for item, res in results:
        for i, row in enumerate(item.rows):
            dup = i > 0
            output = res.output_path
            status, stage, code, message = res.status, res.stage, res.error_code, res.message
            if dup and output and res.status == "succeeded":
                try:
                    copy_atomic(Path(output), names[row.line])
                    output = str(names[row.line])
                except OSError as exc:  # disk full, a folder in the way: this row fails, the report is written
                    status, stage, code, output = "failed", "output", "output_copy_failed", None
                    message = (f"could not copy the picture of row {item.primary.row_id!r} to {names[row.line].name}: "
                               f"{type(exc).__name__}: {exc.strerror or exc}")
            units = 0 if dup else res.units
            out.append(RowOutcome(
                line=row.line, row_id=row.row_id, input=redact_url(row.image_url), prompt=row.prompt,
                template_id=row.template_id, status=status, failed_stage=stage,
                error_code=code, error_message=message, http_status=res.http_status,
                task_id=res.task_id, request_id=res.request_id, attempts=0 if dup else res.attempts,
                polls=0 if dup else res.polls, started_at=res.started_at, finished_at=res.finished_at,
                seconds=res.seconds, units_charged=units, cost=round(units * unit_price, 4),
                output_path=output, output_sha256=res.output_sha256, width=res.width, height=res.height,
                input_sha256=item.prepared.sha256, reused=res.reused or dup,
                possible_duplicate=res.possible_duplicate and not dup,
                duplicate_of=item.primary.row_id if dup else None, note=res.note, extra=row.extra))
    return out
