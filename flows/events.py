"""The Prefect events a run emits for the cases that need a person, for automations to act on, and the WARNING it
logs for each row that did not succeed.

    backdrop.batch.completed-with-failures   resource backdrop.batch.<flow run id>; payload rows, failed, pending,
                                             not_attempted, units_charged, csv
    backdrop.cost.over-budget                resource backdrop.cost.<flow run id>; payload the budget's figures

Emitted from inside the flow run, so Prefect relates each event to that flow run (and its deployment, for a
deployed run). The README shows an automation that notifies on them. Emitting is best effort: an event that
cannot be sent never fails a run whose report is written.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from prefect.events import emit_event

__all__ = ["FAILURES_EVENT", "MAX_ROW_WARNINGS", "OVER_BUDGET_EVENT", "emit_run_event", "warn_each_failed_row"]

FAILURES_EVENT = "backdrop.batch.completed-with-failures"
OVER_BUDGET_EVENT = "backdrop.cost.over-budget"

_log = logging.getLogger(__name__)


def emit_run_event(event: str, run_id: str, payload: dict[str, Any]) -> None:
    """Emit `event` about flow run `run_id` (resource `backdrop.<batch|cost>.<run id>`); never raises."""
    kind = event.split(".")[1]
    try:
        emit_event(event, resource={"prefect.resource.id": f"backdrop.{kind}.{run_id}",
                                    "prefect.resource.name": f"backdrop {kind} {run_id}"}, payload=payload)
    except Exception as exc:  # noqa: BLE001 - an event is best effort
        _log.warning("event %s not emitted: %s", event, exc)


#: one WARNING per row that did not succeed, up to this many (report.csv lists them all)
MAX_ROW_WARNINGS = 200


def warn_each_failed_row(df: pd.DataFrame, logger: Any) -> None:
    """One WARNING per row that failed, waits for a person or was not attempted: row id, code, message."""
    bad = df[~df["status"].isin(("succeeded", "skipped"))]
    for row in bad.head(MAX_ROW_WARNINGS).itertuples(index=False):
        logger.warning("row %s %s: %s: %s", row.row_id, row.status, row.error_code, row.error_message)
    if len(bad) > MAX_ROW_WARNINGS:
        logger.warning("... and %d more rows that did not succeed: report.csv lists every one",
                       len(bad) - MAX_ROW_WARNINGS)
