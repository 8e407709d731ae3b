"""The report is always written: whatever fails after the batch started, report.csv and summary.json list every row.

Review findings 7 (a failed copy for a duplicate row, after paying, lost the whole report), 22 (a second run with
webhooks died at bind with no report) and issue 12 (the gallery, an artifact or a cancelled run cost the report).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from backdrop.pipeline.webhooks import WebhookReceiver
from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


def _batch(folder: Path, n: int) -> Path:
    for i in range(n):
        draw_product(folder / f"{i}.jpg", (40 * i % 255, 100, 30))
    return write_csv(folder, [{"id": f"r{i}", "image_url": f"{i}.jpg", "prompt": "beach"} for i in range(n)])


def test_a_duplicate_rows_failed_copy_costs_that_row_only(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "mug.jpg", (200, 30, 30))
    draw_product(tmp_path / "cup.jpg", (30, 30, 200))
    rows = [{"id": "a", "image_url": "mug.jpg", "prompt": "beach"},
            {"id": "b", "image_url": "mug.jpg", "prompt": "beach"},  # same picture and prompt: a copy of a's
            {"id": "c", "image_url": "cup.jpg", "prompt": "beach"}]
    out = tmp_path / "out"
    (out / "b.jpg").mkdir(parents=True)  # a folder where b's copy must go

    state, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(out))

    assert state.name == "Completed with failures"
    assert list(df["row_id"]) == ["a", "b", "c"]
    by_id = df.set_index("row_id")
    assert list(by_id["status"]) == ["succeeded", "failed", "succeeded"]
    assert (by_id.loc["b", "error_code"], by_id.loc["b", "failed_stage"]) == ("output_copy_failed", "output")
    assert list(by_id["units_charged"]) == [4, 0, 4]  # a's charge stays on a; b never paid
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows"], summary["failed"], summary["units_charged"]) == (3, 1, 8)


def test_a_run_cancelled_mid_batch_reports_every_row(pipeline_env: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from backdrop.pipeline.lifecycle import RowLifecycle
    from flows.change_backgrounds import change_backgrounds
    from flows.progress import follow_progress

    csv = _batch(tmp_path, 5)
    out = tmp_path / "out"
    first_seen = threading.Event()  # set by the first progress event, through Prefect
    seen: list[tuple[int, int, str]] = []
    run_lifecycle = RowLifecycle.run
    started = 0

    async def held_after_the_first(self: RowLifecycle, item: Any) -> Any:
        # The progress event travels through Prefect's event stream and arrives a moment after the first picture
        # ended: the later pictures wait (as slow ones would) until the run is cancelled on that event.
        nonlocal started
        started += 1
        if started > 1:
            await asyncio.sleep(3600)
        return await run_lifecycle(self, item)

    monkeypatch.setattr(RowLifecycle, "run", held_after_the_first)

    def on_progress(done: int, total: int, status: str) -> None:  # called from the follower's thread
        seen.append((done, total, status))
        if done == 1:
            first_seen.set()

    async def cancel_after_first(flow: Any) -> None:
        run = asyncio.ensure_future(flow(csv=str(csv), out=str(out), concurrency=1))
        await asyncio.to_thread(first_seen.wait, 60)
        run.cancel()
        await run

    with follow_progress(change_backgrounds, on_progress) as followed:
        with pytest.raises(BaseException):  # noqa: B017 - cancelled (or Prefect's termination signal)
            asyncio.run(cancel_after_first(followed))

    assert seen[0] == (1, 5, "succeeded")  # the first picture's progress came through Prefect
    df = pd.read_csv(out / "report.csv")
    assert list(df["row_id"]) == [f"r{i}" for i in range(5)]  # every row, once
    assert df.loc[0, "status"] == "succeeded" and df.loc[0, "units_charged"] == 4  # its charge is reported
    assert set(df["status"].iloc[1:]) == {"not_attempted"}
    assert set(df["units_charged"].iloc[1:]) == {0}
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows"], summary["succeeded"], summary["not_attempted"]) == (5, 1, 4)
    assert summary["units_charged"] == 4 and summary["interrupted"].startswith("CancelledError")
    assert len(pipeline_env.tasks()) == 1  # nothing was created after the cancellation


def test_a_failing_gallery_never_costs_the_report(pipeline_env: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.change_backgrounds as flow_module

    def broken(*_: Any, **__: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(flow_module, "write_gallery", broken)
    state, df = run_flow(csv=str(_batch(tmp_path, 2)), out=str(tmp_path / "out"))

    assert state.is_completed() and list(df["status"]) == ["succeeded", "succeeded"]
    summary = state.result()
    assert "No space left" in summary["gallery_error"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["gallery_error"] == summary["gallery_error"]
    assert not (tmp_path / "out" / "gallery.html").exists()


def test_a_second_run_on_a_taken_webhook_address_polls_and_succeeds(pipeline_env: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listen = f"127.0.0.1:{port}"
    monkeypatch.setenv("BACKDROP_WEBHOOK_LISTEN", listen)
    monkeypatch.setenv("BACKDROP_WEBHOOK_SECRET", pipeline_env.webhook_secret)
    with WebhookReceiver(pipeline_env.webhook_secret, listen):  # the first run's receiver holds the address
        state, df = run_flow(csv=str(_batch(tmp_path, 2)), out=str(tmp_path / "out"))

    assert state.is_completed() and list(df["status"]) == ["succeeded", "succeeded"]
    summary = state.result()
    assert summary["webhooks"] is None
    assert summary["webhooks_fallback"].startswith(f"cannot listen on {listen}: OSError")
    assert "polls" in summary["webhooks_fallback"]
    assert any(r.levelname == "WARNING" and "webhooks:" in r.getMessage() for r in caplog.records)
