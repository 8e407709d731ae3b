"""The cases that need a person, the Prefect way: a WARNING per failed row, and an event automations can act on.

`backdrop.batch.completed-with-failures` after a batch with failed rows, `backdrop.cost.over-budget` after a cost
report over its alarm threshold; each read back from Prefect's event store, related to the run that emitted it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

from flows.events import FAILURES_EVENT, OVER_BUDGET_EVENT
from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product
from tests.support.waiting import wait_until


async def _events(name: str, resource_id: str) -> list[Any]:
    now = datetime.now(UTC)
    flt = EventFilter(event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[resource_id]),
                      occurred=EventOccurredFilter(since=now - timedelta(hours=1), until=now + timedelta(minutes=5)))
    async with get_client() as client:
        return list((await client.read_events(filter=flt, limit=50)).events)


def _event(name: str, resource_id: str) -> Any:
    found = wait_until(lambda: asyncio.run(_events(name, resource_id)), timeout=30,
                       message=f"no {name} event for {resource_id}")
    assert len(found) == 1, found
    return found[0]


async def _warnings(flow_run_id: Any) -> list[str]:
    """The run's WARNING logs as Prefect's API holds them (what the UI's log tab shows)."""
    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]), level=LogFilterLevel(ge_=30, le_=30))
    async with get_client() as client:
        return [log.message for log in await client.read_logs(log_filter=flt)]


def test_a_batch_with_failed_rows_warns_per_row_and_emits_an_event(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    rows = [{"id": "good", "image_url": "a.jpg", "prompt": "beach"},
            {"id": "gone", "image_url": "missing.jpg", "prompt": "beach"},
            {"id": "refused", "image_url": "a.jpg", "prompt": "x [[sandbox:error=error_inference]]"}]
    state, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"))
    assert state.name == "Completed with failures"
    run_id = str(state.state_details.flow_run_id)

    def rows_warned() -> list[str] | None:  # the API gets logs in batches: wait for both rows' lines
        found = [m for m in asyncio.run(_warnings(run_id)) if m.startswith("row ")]
        return found if len(found) >= 2 else None

    warned = wait_until(rows_warned, timeout=30, message="no WARNING per failed row in the run's logs")
    assert sorted(warned) == sorted([
        f"row gone failed: input_not_found: {df.set_index('row_id').loc['gone', 'error_message']}",
        f"row refused failed: error_inference: {df.set_index('row_id').loc['refused', 'error_message']}"])

    event = _event(FAILURES_EVENT, f"backdrop.batch.{run_id}")
    assert event.payload == {"rows": 3, "failed": 2, "pending": 0, "not_attempted": 0, "units_charged": 4,
                             "csv": str(tmp_path / "batch.csv")}
    assert run_id in {r.id.removeprefix("prefect.flow-run.") for r in event.related}  # related to its run


def test_a_batch_where_every_row_succeeds_emits_no_failure_event(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "a.jpg", (30, 200, 30))
    state, _ = run_flow(csv=str(write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])),
                        out=str(tmp_path / "out"))
    assert state.name == "Completed"
    run_id = str(state.state_details.flow_run_id)
    asyncio.run(asyncio.sleep(2))  # give a wrongly emitted event the time the other test allows it
    assert asyncio.run(_events(FAILURES_EVENT, f"backdrop.batch.{run_id}")) == []


def test_a_cost_report_over_budget_emits_an_event(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cost_report import cost_report

    draw_product(tmp_path / "a.jpg", (30, 30, 200))
    run_flow(csv=str(write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])),
             out=str(tmp_path / "out"))
    monkeypatch.setenv("BACKDROP_BUDGET_UNITS", "4")  # the batch spent 4: 100% of it
    today = datetime.now(UTC).date()
    state = asyncio.run(cost_report(since=today - timedelta(days=1), until=today + timedelta(days=2),
                                    out=str(tmp_path / "cost"), return_state=True))
    assert state.name == "Over budget"
    event = _event(OVER_BUDGET_EVENT, f"backdrop.cost.{state.state_details.flow_run_id}")
    assert event.payload["used_units"] == 4 and event.payload["alert"] is True
