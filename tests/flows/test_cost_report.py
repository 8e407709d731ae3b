"""The cost-report flow and `backdrop cost` against the real sandbox, after real batches."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import update

from backdrop.cli import app
from backdrop.cost import FOCUS_COLUMNS, SERVICE_NAME
from backdrop.store.ledger import Ledger, work
from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product
from tests.support.sandbox import spend

TODAY = datetime.now(UTC).date()
# A window around today, so a test that runs across midnight (UTC) still sees its own batch.
WINDOW = {"since": TODAY - timedelta(days=1), "until": TODAY + timedelta(days=2)}


def _batch(tmp_path: Path, prompts: list[str]) -> Path:
    rows = []
    for i, prompt in enumerate(prompts):
        draw_product(tmp_path / f"p{i}.jpg", (200, 30 + 50 * i, 30))
        rows.append({"id": f"r{i}", "image_url": f"p{i}.jpg", "prompt": prompt})
    csv = write_csv(tmp_path, rows)
    run_flow(csv=str(csv), out=str(tmp_path / "out"))
    return csv


def _cost(**params: Any) -> Any:
    from flows.cost_report import cost_report

    return asyncio.run(cost_report(**{**WINDOW, **params}, return_state=True))


async def _artifact(flow_run_id: Any, key: str) -> Any:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return next(a for a in found if a.key == key)


def _ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")  # pipeline_env's BACKDROP_HOME


def test_totals_match_what_the_sandbox_charged(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _batch(tmp_path, ["beach", "forest", "x [[sandbox:error=error_inference]]"])
    monkeypatch.setenv("BACKDROP_BUDGET_UNITS", "100000")
    monkeypatch.setenv("BACKDROP_UNIT_PRICE", "0.05")
    state = _cost(out=str(tmp_path / "cost"))
    assert (state.is_completed(), state.name) == (True, "Completed")
    summary = state.result()

    vendor = pipeline_env.ledger()
    charged = {c["task_id"]: c["units"] for c in vendor["charges"]}
    assert len(charged) == 2
    assert summary["totals"] == {"created": 3, "succeeded": 2, "failed": 1, "pending": 0,
                                 "units": sum(charged.values()), "cost": 0.4, "vendor_units": 8.0}
    assert summary["balance"] == vendor["balance"]
    assert summary["reconciliation"]["unknown_to_ledger"] == []
    assert summary["reconciliation"]["missing_at_vendor"] == []
    assert summary["deployments"] == [{"deployment": "(local)", "created": 3, "succeeded": 2, "failed": 1,
                                       "pending": 0, "units": 8, "cost": 0.4}]
    [run] = summary["runs"]
    assert (run["created"], run["succeeded"], run["units"]) == (3, 2, 8)
    assert summary["budget"]["used_units"] == 8 and not summary["over_budget"]

    focus = pd.read_csv(summary["files"]["focus_csv"])
    assert list(focus.columns) == FOCUS_COLUMNS
    assert sorted(focus["ResourceId"]) == sorted(charged)
    assert set(focus["ServiceName"]) == {SERVICE_NAME} and set(focus["ConsumedUnit"]) == {"unit"}
    assert focus["BilledCost"].tolist() == [0.2, 0.2]
    assert {json.loads(t)["run_id"] for t in focus["Tags"]} == {run["run_id"]}
    assert pd.read_parquet(summary["files"]["daily_parquet"])["units"].sum() == 8
    with Image.open(summary["files"]["chart"]) as img:
        assert img.format == "PNG"

    md = asyncio.run(_artifact(state.state_details.flow_run_id, "backdrop-cost")).data
    assert "| 3 | 2 | 1 | 0 | 8 | 0.40 USD |" in md
    assert f"| {TODAY} | 3 | 2 | 1 | 0 | 8 | 8 | `{'█' * 20}` |" in md
    assert "8 units charged by the vendor in the period, 8 in the ledger: matches the ledger." in md
    assert "cost_units_per_day.png" in md and "within budget" in md


def test_planted_differences_show_up_both_ways(pipeline_env: Any, tmp_path: Path) -> None:
    _batch(tmp_path, ["beach"])
    [elsewhere] = asyncio.run(spend(pipeline_env, tmp_path))  # charged, unknown to Backdrop's ledger
    ledger = _ledger(tmp_path)
    [row] = ledger.entries(statuses=("succeeded",))
    with ledger.engine.begin() as conn:  # the ledger now claims a task the vendor never charged
        conn.execute(update(work).where(work.c.id == row.id).values(task_id="task-the-vendor-never-saw"))

    state = _cost(out=str(tmp_path / "cost"))
    recon = state.result()["reconciliation"]
    assert sorted(u["task_id"] for u in recon["unknown_to_ledger"]) == sorted([elsewhere, row.task_id])
    assert [(m["task_id"], m["units"], m["row_id"]) for m in recon["missing_at_vendor"]] == \
        [("task-the-vendor-never-saw", 4, "r0")]
    assert (recon["vendor_units"], recon["ledger_units"], recon["difference"]) == (8.0, 4, 4.0)
    md = asyncio.run(_artifact(state.state_details.flow_run_id, "backdrop-cost")).data
    assert f"| `{elsewhere}` | 4 |" in md and "| `task-the-vendor-never-saw` | 4 |" in md


def test_a_tiny_budget_ends_over_budget_with_a_warning(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _batch(tmp_path, ["beach"])
    monkeypatch.setenv("BACKDROP_BUDGET_UNITS", "1")
    caplog.set_level(logging.INFO)
    state = _cost(out=str(tmp_path / "cost"))
    assert (state.is_completed(), state.name) == (True, "Over budget")
    assert state.message.startswith("4 of 1 units used this month (400%)")
    assert state.result()["over_budget"] is True
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [f"Backdrop over budget: {state.message}"]


def test_the_cli_prints_json_and_exits_1_over_budget(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _batch(tmp_path, ["beach"])
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")  # keep the CLI from setting it for the session
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = ["cost", "--since", str(WINDOW["since"]), "--until", str(WINDOW["until"]),
            "--out", str(tmp_path / "cost")]
    capsys.readouterr()
    assert app([*args, "--json-output"], result_action="return_value") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["totals"]["units"], summary["since"], summary["over_budget"]) == \
        (4, str(WINDOW["since"]), False)
    assert Path(summary["files"]["focus_parquet"]).is_file()

    monkeypatch.setenv("BACKDROP_BUDGET_UNITS", "2")
    assert app(args, result_action="return_value") == 1
    printed = capsys.readouterr()
    assert printed.out == ""  # tables go to the console (stderr), as `backdrop run` does
    assert "succeeded (charged)" in printed.err and "over budget" in printed.err
    assert f"focus_csv: {tmp_path / 'cost' / 'cost_focus.csv'}\n" in printed.err


def test_the_cli_refuses_a_bad_period(capsys: pytest.CaptureFixture[str]) -> None:
    assert app(["cost", "--since", "2026-11-05", "--until", "2026-11-01"], result_action="return_value") == 2
    assert app(["cost", "--since", "November"], result_action="return_value") == 2
    assert "must be after" in capsys.readouterr().err


def test_default_period_is_the_budget_period_to_tomorrow(pipeline_env: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_BUDGET_PERIOD", "week")
    from flows.cost_report import cost_report

    state = asyncio.run(cost_report(out=str(tmp_path / "cost"), return_state=True))
    summary = state.result()
    today = datetime.now(UTC).date()
    assert date.fromisoformat(summary["since"]) == today - timedelta(days=today.weekday())
    assert date.fromisoformat(summary["until"]) == today + timedelta(days=1)
    assert summary["totals"]["created"] == 0 and summary["budget"] is None


def test_the_cost_reports_out_is_held_to_the_output_roots(pipeline_env: Any, tmp_path: Path) -> None:
    # `out` is a parameter of the cost-daily deployment: anyone allowed to press Run may set it
    outside = Path("/var/tmp") / f"backdrop-cost-{tmp_path.name}"
    state = _cost(out=str(outside))
    assert state.is_failed() and "outside the folders runs may write" in (state.message or "")
    assert not outside.exists()


def test_without_a_key_the_report_comes_from_the_ledger_and_says_the_vendor_was_not_checked(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _batch(tmp_path, ["beach", "forest"])
    with_key = _cost(out=str(tmp_path / "with-key")).result()
    monkeypatch.delenv("BACKDROP_API_KEY")  # a finance user: the ledger, and no key
    state = _cost(out=str(tmp_path / "cost"))
    assert state.is_completed()
    summary = state.result()
    assert summary["vendor_checked"] is False and "not checked" in summary["vendor_note"]
    assert (summary["reconciliation"], summary["balance"]) == (None, None)
    assert {k: v for k, v in summary["totals"].items() if k != "vendor_units"} == {
        k: v for k, v in with_key["totals"].items() if k != "vendor_units"}
    assert summary["totals"]["units"] == 8 and "vendor_units" not in summary["totals"]
    assert with_key["vendor_checked"] is True and with_key["vendor_note"] is None
    markdown = asyncio.run(_artifact(state.state_details.flow_run_id, "backdrop-cost")).data
    assert "**Ledger only:** the vendor's side was not checked" in markdown
    written = json.loads((tmp_path / "cost" / "cost_summary.json").read_text())
    assert written["vendor_checked"] is False

    # the CLI too: exit 0 (within budget), and the table says the vendor was not checked
    capsys.readouterr()
    args = ["cost", "--since", str(WINDOW["since"]), "--until", str(WINDOW["until"]), "--out", str(tmp_path / "c2")]
    assert app(args, result_action="return_value") == 0
    assert "not checked" in capsys.readouterr().err
