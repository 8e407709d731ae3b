"""How a work item ended (`ItemResult`), and the copies a duplicate row gets.

`ItemResult` is the lifecycle's answer for one paid picture; every row that asked for that picture is reported
from it (`backdrop.report.rows`).
A duplicate row reuses the first row's picture: `copy_duplicate_outputs` gives it its own file first, an explicit
step with file system effects, so that the report's `row_outcomes` is a pure mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from backdrop.files import copy_atomic
from backdrop.pipeline.plan import WorkItem

__all__ = ["ItemResult", "copy_duplicate_outputs", "now_iso"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


def copy_duplicate_outputs(results: list[tuple[WorkItem, ItemResult]],
                           names: dict[int, Path]) -> dict[int, ItemResult]:
    """Copy each succeeded picture to its duplicate rows' own output names; return, by line, each duplicate's
    result: its copy, or `output_copy_failed` (disk full, a folder in the way: that row fails, the report is
    still written). Rows not listed report their item's result as it is."""
    copies: dict[int, ItemResult] = {}
    for item, res in results:
        output = res.output_path
        if not (output and res.status == "succeeded"):
            continue
        for row in item.rows[1:]:
            try:
                copy_atomic(Path(output), names[row.line])
                copies[row.line] = replace(res, output_path=str(names[row.line]))
            except OSError as exc:
                copies[row.line] = replace(
                    res, status="failed", stage="output", error_code="output_copy_failed", output_path=None,
                    message=(f"could not copy the picture of row {item.primary.row_id!r} to "
                             f"{names[row.line].name}: {type(exc).__name__}: {exc.strerror or exc}"))
    return copies
