"""The batch flow against the sandbox's documented timeouts: a polling window that expires unpolled tasks (poll
mode and webhook mode never lose one), and the poll 500 TaskTimeout (the row stays pending with its task id)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product

#: the sandbox runs 10 vendor seconds per real second: its 25 s window is 2.5 s real, a 60 s task 6 s real
SCALE = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("mode", ["poll", "webhook"])
def test_a_polling_window_never_loses_a_task(pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             mode: str) -> None:
    pipeline_env.configure(polling_window_s=25, time_scale=SCALE, duration_mode="fixed", duration_median_s=60)
    # Backdrop's times are real seconds: a 20 vendor-second gap is 2 s here. Everything else would wait far
    # longer than the window (a first poll at 8 s, back-off to 30 s, a webhook safety poll at 60 s).
    monkeypatch.setenv("BACKDROP_POLL_MAX_GAP_SECONDS", str(20 / SCALE))
    # and the rate limit in the same time: the limiter keeps room to poll every running task every 1.5 s, which the
    # vendor's 250 per 300 s allows for one or two tasks at once, and 250 per 30 s for eleven
    monkeypatch.setenv("BACKDROP_RATE_LIMIT_WINDOW_SECONDS", str(300 / SCALE))
    monkeypatch.setenv("BACKDROP_RATE_LIMIT_PER_SECOND", str(5 * SCALE))
    monkeypatch.setenv("BACKDROP_RATE_LIMIT_SHORT_WINDOW_SECONDS", str(1 / SCALE))
    monkeypatch.setenv("BACKDROP_POLL_FIRST_SECONDS", "8")
    monkeypatch.setenv("BACKDROP_POLL_MAX_INTERVAL_SECONDS", "30")
    monkeypatch.setenv("BACKDROP_WEBHOOK_SAFETY_POLL_SECONDS", "60")
    if mode == "webhook":
        port = _free_port()
        monkeypatch.setenv("BACKDROP_WEBHOOK_LISTEN", f"127.0.0.1:{port}")
        monkeypatch.setenv("BACKDROP_WEBHOOK_SECRET", pipeline_env.webhook_secret)
        pipeline_env.configure(webhook_urls=[f"http://127.0.0.1:{port}/webhooks/perfectcorp"])
    for i in range(3):
        draw_product(tmp_path / f"{i}.jpg", (70 * i, 90, 40))
    rows = [{"id": str(i), "image_url": f"{i}.jpg", "prompt": "studio"} for i in range(3)]
    state, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"))

    assert list(df["status"]) == ["succeeded"] * 3, df[["status", "error_code", "error_message"]]
    assert df["units_charged"].sum() == 12
    tasks = pipeline_env.tasks()
    assert len(tasks) == 3 and not any(t["expired"] for t in tasks)
    # each 6 s task was polled while running, at most 2 s apart, so at least three times
    assert all(p >= 3 for p in df["polls"])
    if mode == "webhook":
        assert state.result()["webhooks"]["verified"] == 3


def test_a_task_timeout_leaves_the_row_pending_with_its_task_id(pipeline_env: Any, tmp_path: Path) -> None:
    pipeline_env.configure(task_timeout_s=1, duration_mode="fixed", duration_median_s=100, time_scale=100)
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    csv = write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])
    state, df = run_flow(csv=str(csv), out=str(tmp_path / "out"))

    (row,) = df.to_dict("records")
    (task,) = pipeline_env.tasks()
    # the vendor may have charged it: never "failed, not charged"; the next run asks again and pays nothing more
    assert (row["status"], row["failed_stage"], row["error_code"]) == ("pending_reconcile", "poll", "TaskTimeout")
    assert row["task_id"] == task["task_id"] and row["units_charged"] == 0
    assert state.name != "Completed"
    creates = [j for j in pipeline_env.journal() if j["method"] == "POST" and "/task/" in j["path"]]
    assert len(creates) == 1

    # a re-run polls the same task again and creates nothing
    _, again = run_flow(csv=str(csv), out=str(tmp_path / "again"))
    assert (again.at[0, "status"], again.at[0, "task_id"]) == ("pending_reconcile", task["task_id"])
    assert len([j for j in pipeline_env.journal() if j["method"] == "POST" and "/task/" in j["path"]]) == 1
