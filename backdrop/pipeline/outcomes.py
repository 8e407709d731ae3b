"""How a work item ended (`ItemResult`) and the report rows it becomes (`report.table.RowOutcome`).

`ItemResult` is the lifecycle's answer for one paid picture; every row that asked for that picture is reported
from it. The report row is derived field by field under the report's names (`_REPORT_NAMES`), not copied by hand.
A duplicate row reuses the first row's picture: `copy_duplicate_outputs` gives it its own file first, an explicit
step with file system effects, so that `row_outcomes` itself is a pure mapping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backdrop.errors import InputRejected
from backdrop.fences import redact_url
from backdrop.files import copy_atomic
from backdrop.pipeline.inputs import InputRow
from backdrop.pipeline.plan import WorkItem
from backdrop.report.table import RowOutcome

__all__ = ["ItemResult", "copy_duplicate_outputs", "now_iso", "row_outcomes"]


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


#: ItemResult fields the report names otherwise; `poll_gap` feeds the run's summary, not the report
_REPORT_NAMES = {"stage": "failed_stage", "message": "error_message", "units": "units_charged"}
_NOT_REPORTED = ("poll_gap",)


def _report_fields(res: ItemResult) -> dict[str, Any]:
    """`res` under the report's column names."""
    fields = asdict(res)
    for name in _NOT_REPORTED:
        del fields[name]
    return {_REPORT_NAMES.get(k, k): v for k, v in fields.items()}


def _row_fields(row: InputRow) -> dict[str, Any]:
    """What a report row says of its input line."""
    return {"line": row.line, "row_id": row.row_id, "input": redact_url(row.image_url), "prompt": row.prompt,
            "template_id": row.template_id, "extra": row.extra}


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


def row_outcomes(rows: list[InputRow], rejected: dict[int, InputRejected],
                 results: list[tuple[WorkItem, ItemResult]], copies: dict[int, ItemResult],
                 unit_price: float) -> list[RowOutcome]:
    """Exactly one outcome per input row: rejected rows, then each work item's rows (its duplicates reuse
    the first row's picture, copied beforehand by `copy_duplicate_outputs`, and pay nothing)."""
    out: list[RowOutcome] = []
    for row in rows:
        if row.line in rejected:
            exc = rejected[row.line]
            out.append(RowOutcome(**_row_fields(row), status="failed", failed_stage="preflight",
                                  error_code=exc.report_code, error_message=exc.message, http_status=exc.status))
    for item, res in results:
        for i, row in enumerate(item.rows):
            dup = i > 0
            units = 0 if dup else res.units
            outcome = RowOutcome(**_row_fields(row), **_report_fields(copies.get(row.line, res) if dup else res),
                                 cost=round(units * unit_price, 4), input_sha256=item.prepared.sha256)
            if dup:
                outcome = replace(outcome, attempts=0, polls=0, units_charged=0, reused=True,
                                  possible_duplicate=False, duplicate_of=item.primary.row_id)
            out.append(outcome)
    return out
