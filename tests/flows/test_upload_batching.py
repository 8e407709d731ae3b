"""Batched upload slots in the batch flow, against the sandbox: the File API is asked for several pictures per
call (about 1/N calls a picture), and a sandbox that refuses batches makes the run fall back to one file per
request with every row succeeding and the summary saying so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product

ROWS = 12


def _batch(tmp_path: Path) -> Path:
    rows = []
    for i in range(ROWS):
        draw_product(tmp_path / f"p{i}.jpg", (20 * i, 90, 200 - 10 * i))
        rows.append({"id": f"p{i}", "image_url": f"p{i}.jpg", "prompt": "white marble"})
    return write_csv(tmp_path, rows)


def _file_calls(sandbox: Any) -> list[dict[str, Any]]:
    return [e for e in sandbox.journal() if e.get("route") == "file"]


def test_slots_are_asked_for_several_pictures_per_call(pipeline_env: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_UPLOAD_BATCH", "5")
    monkeypatch.setenv("BACKDROP_UPLOAD_BATCH_LINGER_SECONDS", "0.5")
    before = pipeline_env.ledger()["balance"]
    state, df = run_flow(csv=str(_batch(tmp_path)), out=str(tmp_path / "out"), concurrency=ROWS)

    assert state.name == "Completed"
    assert list(df["status"]) == ["succeeded"] * ROWS
    assert df["units_charged"].sum() == 4 * ROWS == before - pipeline_env.ledger()["balance"]
    calls = _file_calls(pipeline_env)
    assert all(c["status"] == 200 for c in calls)
    # 12 pictures, at most 5 a call: 3 calls when they all arrive together, never one per picture
    assert 3 <= len(calls) <= 6
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["upload_batching"] == "on (N=5)"
    assert summary["requests_by_route"]["file"] == len(calls)
    assert summary["requests_by_route"]["put"] == ROWS
    assert summary["api_requests_per_picture"] <= 2 + 6 / ROWS + 0.5  # create + poll(s) + a share of a slot call
    assert len(set(df["task_id"])) == ROWS


@pytest.mark.parametrize(("refusal", "why"), [("refuse", "400"), ("fewer_slots", "answered 1 upload slots")])
def test_a_vendor_that_refuses_batches_gets_one_file_per_request_and_no_row_fails(
        pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: str, why: str) -> None:
    pipeline_env.configure(file_batch=refusal)
    monkeypatch.setenv("BACKDROP_UPLOAD_BATCH", "4")
    state, df = run_flow(csv=str(_batch(tmp_path)), out=str(tmp_path / "out"), concurrency=ROWS)

    assert state.name == "Completed"
    assert list(df["status"]) == ["succeeded"] * ROWS
    calls = _file_calls(pipeline_env)
    assert [c["status"] for c in calls].count(400) == (1 if refusal == "refuse" else 0)
    # one batched try, then each picture alone (the refused batch's pictures again, and the rest)
    assert len(calls) == ROWS + 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["upload_batching"].startswith("off: the vendor ")
    assert why in summary["upload_batching"]
    assert df["units_charged"].sum() == 4 * ROWS


def test_slots_answered_in_another_order_still_reach_their_own_pictures(pipeline_env: Any, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The order of a batched answer is not published: a slot taken by position would PUT one row's picture under
    another's file id, and the vendor would be paid to change the wrong picture's background."""
    pipeline_env.configure(file_batch="reversed")
    monkeypatch.setenv("BACKDROP_UPLOAD_BATCH", "6")
    monkeypatch.setenv("BACKDROP_UPLOAD_BATCH_LINGER_SECONDS", "0.5")
    state, df = run_flow(csv=str(_batch(tmp_path)), out=str(tmp_path / "out"), concurrency=ROWS)

    assert state.name == "Completed"
    assert list(df["status"]) == ["succeeded"] * ROWS
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["upload_batching"] == "on (N=6)"
    assert summary["requests_by_route"]["file"] < ROWS  # some calls carried several pictures
    for row in df.itertuples():
        # the product in the middle of the result is the row's own colour (the rows differ by 20 in red)
        with Image.open(str(row.output_path)) as im:
            r, g, b = im.convert("RGB").getpixel((im.width // 2, im.height // 2))
        i = int(str(row.row_id)[1:])
        assert abs(r - 20 * i) < 10 and abs(b - (200 - 10 * i)) < 10, (row.row_id, (r, g, b))
