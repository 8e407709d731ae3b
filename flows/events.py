"""The Prefect events a run emits for the cases that need a person, for automations to act on.

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

from prefect.events import emit_event

__all__ = ["FAILURES_EVENT", "OVER_BUDGET_EVENT", "emit_run_event"]

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
