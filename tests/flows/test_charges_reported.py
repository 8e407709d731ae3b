"""Every charge lands in exactly one run's report, whatever fails after it; budgets count what may be charged."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from backdrop.report.markdown import summary_markdown
from backdrop.store.ledger import Ledger, default_ledger_url
from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


def _spent(sandbox: Any) -> int:
    led = sandbox.ledger()
    return int(led["starting_balance"] - led["balance"])


def _one_row(tmp_path: Path) -> Path:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    return write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])


def test_a_download_that_fails_on_disk_still_reports_the_charge(pipeline_env: Any, tmp_path: Path) -> None:
    csv = _one_row(tmp_path)
    (tmp_path / "out" / "a.jpg").mkdir(parents=True)  # the picture's file name is taken by a folder
    _, first = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert (first.loc[0, "status"], first.loc[0, "failed_stage"]) == ("failed", "download")
    assert first.loc[0, "units_charged"] == 4  # paid: this report carries it
    (tmp_path / "out" / "a.jpg").rmdir()
    _, second = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert second.loc[0, "status"] == "succeeded" and second.loc[0, "units_charged"] == 0
    assert len(pipeline_env.tasks()) == 1
    assert first["units_charged"].sum() + second["units_charged"].sum() == _spent(pipeline_env) == 4


def test_polls_that_end_in_5xx_leave_the_row_pending_and_the_next_run_reports_the_charge(
    pipeline_env: Any, tmp_path: Path
) -> None:
    csv = _one_row(tmp_path)
    pipeline_env.configure(fault_5xx_rate=1.0, fault_routes=["poll"])
    _, first = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    [made] = pipeline_env.tasks()
    assert (first.loc[0, "status"], first.loc[0, "task_id"]) == ("pending_reconcile", made["task_id"])
    assert _spent(pipeline_env) == 4  # the vendor charged it all the same
    pipeline_env.configure(fault_5xx_rate=0.0)
    _, second = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert second.loc[0, "status"] == "succeeded" and len(pipeline_env.tasks()) == 1
    assert first["units_charged"].sum() + second["units_charged"].sum() == 4


def test_max_units_counts_creates_that_may_still_be_charged(pipeline_env: Any, tmp_path: Path) -> None:
    for i in range(3):
        draw_product(tmp_path / f"{i}.jpg", (200, 30 + 60 * i, 30))
    csv = write_csv(tmp_path, [{"id": f"r{i}", "image_url": f"{i}.jpg", "prompt": "beach"} for i in range(3)])
    pipeline_env.configure(fault_lost_create_rate=1.0, fault_routes=["create"])
    state, df = run_flow(csv=str(csv), out=str(tmp_path / "out"), max_units=4, concurrency=1)
    assert _spent(pipeline_env) <= 4 and len(pipeline_env.tasks()) == 1
    assert sorted(df["status"]) == ["skipped", "skipped", "succeeded"]
    assert state.result()["units_charged"] == 4


def test_a_paid_picture_whose_file_is_gone_is_fetched_again_never_demoted(pipeline_env: Any, tmp_path: Path) -> None:
    csv = _one_row(tmp_path)
    _, first = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    shutil.rmtree(tmp_path / "out")
    _, second = run_flow(csv=str(csv), out=str(tmp_path / "out2"))
    assert second.loc[0, "status"] == "succeeded" and second.loc[0, "units_charged"] == 0
    assert Path(second.loc[0, "output_path"]).is_file()
    # the vendor forgets the task too: the row says so, the ledger keeps the paid success, nothing is created
    shutil.rmtree(tmp_path / "out2")
    _forget_tasks(pipeline_env)
    _, third = run_flow(csv=str(csv), out=str(tmp_path / "out3"))
    assert (third.loc[0, "status"], third.loc[0, "error_code"]) == ("failed", "output_lost")
    assert "backdrop reconcile" in third.loc[0, "error_message"]
    assert [e.status for e in Ledger(default_ledger_url()).entries()] == ["succeeded"]
    assert _spent(pipeline_env) == 4 and int(pd.concat([first, second, third])["units_charged"].sum()) == 4


def _forget_tasks(sandbox: Any) -> None:
    """The vendor deletes every finished task (as after its retention period): polls answer InvalidTaskId."""
    import time

    import httpx

    for t in sandbox.tasks():
        for _ in range(40):  # the sandbox paces this key like the vendor: 5 requests a second
            resp = httpx.post(f"{sandbox.base_url}/s2s/v2.0/task/delete", json={"task_id": t["task_id"]},
                              headers={"Authorization": f"Bearer {sandbox.api_key}"}, timeout=10)
            if resp.status_code != 429:
                break
            time.sleep(0.25)
        resp.raise_for_status()


def test_the_vendors_history_out_of_reach_at_the_end_never_costs_the_report(pipeline_env: Any, tmp_path: Path) -> None:
    """Reading the units back from the credit history is a comparison for the reader: a 503 there writes the report
    all the same, without the vendor's figure, and marks its charges reported."""
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    draw_product(tmp_path / "b.jpg", (30, 30, 200))
    csv = write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"},
                               {"id": "b", "image_url": "b.jpg", "prompt": "beach"}])
    pipeline_env.configure(fault_5xx_rate=1.0, fault_routes=["history"])
    state, df = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert state.is_completed() and list(df["status"]) == ["succeeded", "succeeded"]
    assert df["units_charged"].sum() == _spent(pipeline_env) == 8
    assert state.result()["vendor_units"] is None
    assert "credit history:** could not be read back" in summary_markdown(state.result())  # the run's artifact
    assert all(e.reported_at is not None for e in Ledger(default_ledger_url()).entries())


def test_a_charge_made_while_settling_a_lost_create_is_in_the_report_of_a_run_that_stops(
        pipeline_env: Any, tmp_path: Path) -> None:
    """A stopped run reports from the ledger too: a picture whose lost create the settle phase attributed (charged
    to this run) is in the report with its units when the phase then fails, not left `pending_reconcile` at 0 units
    and marked reported. Every unit the vendor took is in exactly one of the two runs' reports."""
    for name, colour in (("a", (200, 30, 30)), ("c", (30, 200, 30)), ("b", (30, 30, 200))):
        draw_product(tmp_path / f"{name}.jpg", colour)
    csv = write_csv(tmp_path, [{"id": "A", "image_url": "a.jpg", "prompt": "black marble"},  # answer lost
                               {"id": "C", "image_url": "c.jpg", "prompt": "beach"},
                               {"id": "B", "image_url": "b.jpg", "prompt": "warm bokeh"}])  # answer lost
    pipeline_env.configure(seed=0, fault_lost_create_rate=0.5, fault_routes=["create"], duration_mode="fixed",
                           duration_median_s=0.1)  # seed 0 at rate 0.5 loses the answers of creates 1 and 3
    ledger, stop, tripped = Ledger(default_ledger_url()), threading.Event(), threading.Event()

    def history_down_once_a_lost_create_is_charged() -> None:
        while not stop.is_set():
            if any(e.error_code == "attributed" and e.charged_run_id for e in ledger.entries()):
                pipeline_env.configure(fault_5xx_rate=1.0, fault_routes=["history"])
                tripped.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=history_down_once_a_lost_create_is_charged, daemon=True)
    watcher.start()
    try:
        from flows.change_backgrounds import change_backgrounds
        state = asyncio.run(change_backgrounds(csv=str(csv), out=str(tmp_path / "out"), concurrency=1,
                                               return_state=True))
    finally:
        stop.set()
        watcher.join()
    assert tripped.is_set() and state.is_failed()
    first = pd.read_csv(tmp_path / "out" / "report.csv").set_index("row_id")
    [a] = [e for e in ledger.entries() if e.row_id == "A"]
    assert (a.error_code, a.reported_at is not None) == ("attributed", True)
    assert (first.at["A", "task_id"], first.at["A", "units_charged"]) == (a.task_id, 4)
    assert first["units_charged"].sum() == 8  # A and C; B's create is still for the vendor's records to settle
    pipeline_env.configure(fault_5xx_rate=0.0, fault_lost_create_rate=0.0)
    _, second = run_flow(csv=str(csv), out=str(tmp_path / "out2"), concurrency=1)
    assert list(second["status"]) == ["succeeded"] * 3
    assert first["units_charged"].sum() + second["units_charged"].sum() == _spent(pipeline_env) == 12
