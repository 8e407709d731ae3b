"""The report's rows: exactly one `RowOutcome` per input line, derived from the pipeline's `ItemResult`s.

An `ItemResult` is mapped field by field under the report's names (`_REPORT_NAMES`), not copied by hand; a
duplicate row reports the first row's picture (its own copy, made beforehand by the pipeline's
`copy_duplicate_outputs`) and pays nothing. A pure mapping: no file is touched here.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from backdrop.errors import InputRejected
from backdrop.fences import redact_url
from backdrop.pipeline.inputs import InputRow
from backdrop.pipeline.outcomes import ItemResult
from backdrop.pipeline.plan import WorkItem
from backdrop.report.table import RowOutcome

__all__ = ["row_outcomes"]


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
