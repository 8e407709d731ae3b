"""Every charge lands in exactly one run's report, whatever fails after it; budgets count what may be charged."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

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
