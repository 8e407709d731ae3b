"""The batch flow under Prefect, against the sandbox over loopback HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product
from tests.support.loopback import serve


def _creates(sandbox: Any) -> int:
    return sum(1 for j in sandbox.journal() if j["method"] == "POST" and "/task/" in j["path"]
               and not j["path"].endswith("/delete"))


def test_every_row_succeeds_is_paid_once_and_lands_on_disk(pipeline_env: Any, tmp_path: Path) -> None:
    for name, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200)), ("c", (30, 160, 30))):
        draw_product(tmp_path / f"{name}.jpg", colour)
    csv = write_csv(tmp_path, [{"id": n, "image_url": f"{n}.jpg", "prompt": "red backdrop", "sku": f"S-{n}"}
                               for n in "abc"])
    before = pipeline_env.ledger()["balance"]
    state, df = run_flow(csv=str(csv), out=str(tmp_path / "out"))

    assert state.name == "Completed"
    assert list(df["status"]) == ["succeeded"] * 3
    assert list(df["sku"]) == ["S-a", "S-b", "S-c"]  # pass-through columns survive
    assert df["units_charged"].sum() == 12 == before - pipeline_env.ledger()["balance"]
    for rec in df.to_dict("records"):
        with Image.open(rec["output_path"]) as im:
            assert im.format == "JPEG" and im.size == (320, 240) == (rec["width"], rec["height"])
        assert Path(rec["output_path"]).name == f"{rec['row_id']}.jpg"
    assert (tmp_path / "out" / "report.parquet").exists()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["succeeded"], summary["units_charged"]) == (3, 12)
    # the fewest requests a picture can take with an upload: a share of one batched file-slot call, create, one poll
    assert summary["requests_by_route"]["file"] == 1 and summary["upload_batching"] == "on (N=10)"
    assert (summary["api_requests_per_picture"], summary["http_429"]) == (round(7 / 3, 3), 0)
    # one poll each, so the most a finished task waited for it is the wait from its create to that poll
    bound = (summary["poll_wait_bound_p50_seconds"], summary["poll_wait_bound_p95_seconds"])
    assert 0 < bound[0] <= bound[1] <= max(df["seconds"])
    assert summary["requests_by_route"]["put"] == summary["requests_by_route"]["download"] == 3
    assert summary["vendor_units"] == 12 and summary["units_difference"] == 0


def test_each_failure_class_gets_its_code_and_costs_nothing(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "ok.jpg", (200, 30, 30))
    (tmp_path / "text.jpg").write_text("not a picture")
    rows = [
        {"id": "ok", "image_url": "ok.jpg", "prompt": "beach"},
        {"id": "nsfw", "image_url": "ok.jpg", "prompt": "x [[sandbox:error=error_nsfw_content_detected]]"},
        {"id": "notimg", "image_url": "text.jpg", "prompt": "beach"},
        {"id": "missing", "image_url": "nope.jpg", "prompt": "beach"},
        {"id": "escape", "image_url": "../etc/passwd", "prompt": "beach"},
        {"id": "noprompt", "image_url": "ok.jpg", "prompt": ""},
        {"id": "lost", "image_url": "ok.jpg", "prompt": "y [[sandbox:lost]]"},
    ]
    state, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"))
    df = df.fillna({"failed_stage": "", "error_code": ""})
    got = {r["row_id"]: (r["status"], r["failed_stage"], r["error_code"]) for r in df.to_dict("records")}
    assert got == {
        "ok": ("succeeded", "", ""),
        "nsfw": ("failed", "task", "error_nsfw_content_detected"),
        "notimg": ("failed", "preflight", "error_decode_image"),
        "missing": ("failed", "preflight", "input_not_found"),
        "escape": ("failed", "preflight", "input_path_refused"),
        "noprompt": ("failed", "preflight", "prompt_missing"),
        "lost": ("succeeded", "", ""),  # its answer was lost; the run settled it from the credit history
    }
    assert len(df) == len(rows)  # every row exactly once
    assert state.name == "Completed with failures" and "5 of 7" in state.message
    # only the successes were charged, and the report says so
    assert df.set_index("row_id")["units_charged"].to_dict() == {
        "ok": 4, "nsfw": 0, "notimg": 0, "missing": 0, "escape": 0, "noprompt": 0, "lost": 4}


def test_identical_rows_are_created_once_and_reported_for_every_row(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())  # same bytes, other name
    rows = [{"id": "first", "image_url": "a.jpg", "prompt": "beach"},
            {"id": "second", "image_url": "copy.jpg", "prompt": "beach"},
            {"id": "other", "image_url": "a.jpg", "prompt": "studio"}]
    _, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"))
    assert _creates(pipeline_env) == 2
    rec = df.set_index("row_id")
    assert list(rec["status"]) == ["succeeded"] * 3
    assert rec.loc["second", "duplicate_of"] == "first" and rec.loc["second", "units_charged"] == 0
    assert Path(rec.loc["second", "output_path"]).read_bytes() == Path(rec.loc["first", "output_path"]).read_bytes()
    assert df["units_charged"].sum() == 8


def test_budget_is_never_exceeded(pipeline_env: Any, tmp_path: Path) -> None:
    for i in range(5):
        draw_product(tmp_path / f"{i}.jpg", (40 * i, 30, 30))
    rows = [{"id": str(i), "image_url": f"{i}.jpg", "prompt": "beach"} for i in range(5)]
    _, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"), max_units=8,
                     concurrency=5)
    assert sorted(df["status"]) == ["skipped"] * 3 + ["succeeded"] * 2
    assert set(df[df["status"] == "skipped"]["error_code"]) == {"budget_exhausted"}
    assert pipeline_env.ledger()["starting_balance"] - pipeline_env.ledger()["balance"] == 8
    assert _creates(pipeline_env) == 2


def test_dry_run_creates_nothing_and_estimates_the_cost(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    (tmp_path / "bad.jpg").write_text("nope")
    rows = [{"id": "a", "image_url": "a.jpg", "prompt": "beach"},
            {"id": "b", "image_url": "a.jpg", "prompt": "studio"},
            {"id": "bad", "image_url": "bad.jpg", "prompt": "studio"}]
    state, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"), dry_run=True)
    summary = state.result()
    assert (summary["estimated_units"], summary["estimated_cost"]) == (8, round(8 * 0.055, 4))
    # only the free feature-cost list (BACKDROP_FEATURE=auto: which slug a paid run would use), not even an upload slot
    assert [j["path"] for j in pipeline_env.journal()] == ["/s2s/v2.0/credit/feature-cost"]
    assert df.set_index("row_id")["error_code"].to_dict() == {"a": "dry_run", "b": "dry_run",
                                                               "bad": "error_decode_image"}


def test_a_rerun_pays_nothing_and_keeps_the_outputs(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    draw_product(tmp_path / "b.jpg", (30, 30, 200))
    first = [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}]
    run_flow(csv=str(write_csv(tmp_path, first)), out=str(tmp_path / "out1"))
    creates, balance = _creates(pipeline_env), pipeline_env.ledger()["balance"]
    # an overlapping CSV, another output folder: only the new row is paid for
    overlap = first + [{"id": "b", "image_url": "b.jpg", "prompt": "beach"}]
    _, df = run_flow(csv=str(write_csv(tmp_path, overlap)), out=str(tmp_path / "out2"))
    rec = df.set_index("row_id")
    assert (bool(rec.loc["a", "reused"]), rec.loc["a", "units_charged"]) == (True, 0)
    assert (bool(rec.loc["b", "reused"]), rec.loc["b", "units_charged"]) == (False, 4)
    assert _creates(pipeline_env) == creates + 1
    assert balance - pipeline_env.ledger()["balance"] == 4
    assert (tmp_path / "out2" / "a.jpg").read_bytes() == (tmp_path / "out1" / "a.jpg").read_bytes()


def test_running_out_of_credit_stops_new_creates(pipeline_env: Any, tmp_path: Path) -> None:
    pipeline_env.set_balance(8)
    for i in range(4):
        draw_product(tmp_path / f"{i}.jpg", (60 * i, 30, 30))
    rows = [{"id": str(i), "image_url": f"{i}.jpg", "prompt": "beach"} for i in range(4)]
    _, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"), concurrency=1)
    assert list(df["status"]) == ["succeeded", "succeeded", "failed", "skipped"]
    assert list(df["error_code"].fillna("")) == ["", "", "CreditInsufficiency", "CreditInsufficiency"]
    assert pipeline_env.ledger()["balance"] == 0


def test_url_mode_skips_the_upload_and_templates_work(pipeline_env: Any, tmp_path: Path,
                                                      monkeypatch: Any) -> None:
    import http.server

    pics = tmp_path / "public"
    pics.mkdir()
    draw_product(pics / "a.jpg", (200, 30, 30))
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(pics))  # noqa: E731
    monkeypatch.setenv("BACKDROP_FEATURE", "bg-replace")
    with serve(handler) as web:
        url = f"{web}/a.jpg"
        rows = [{"id": "p", "image_url": url, "prompt": "beach", "template_id": ""},
                {"id": "t", "image_url": url, "prompt": "", "template_id": "studio_white"}]
        _, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"), input_mode="url")
    assert list(df["status"]) == ["succeeded", "succeeded"]
    paths = [j["path"] for j in pipeline_env.journal()]
    assert not [p for p in paths if "/file" in p]  # no upload slot asked for
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["upload_batching"] == "not used: no picture was uploaded"
    tasks = {t["template_id"]: t for t in pipeline_env.tasks()}
    assert set(tasks) == {None, "studio_white"}
    task_paths = [p for p in paths if "/task/" in p]
    assert task_paths and all("/task/bg-replace" in p and "bg-replace-v2" not in p for p in task_paths)


def test_webhook_mode_polls_each_task_once(pipeline_env: Any, tmp_path: Path, monkeypatch: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("BACKDROP_WEBHOOK_LISTEN", f"127.0.0.1:{port}")
    monkeypatch.setenv("BACKDROP_WEBHOOK_SECRET", pipeline_env.webhook_secret)
    monkeypatch.setenv("BACKDROP_POLL_FIRST_SECONDS", "5")  # polling alone would wait 5 s per task
    pipeline_env.configure(webhook_urls=[f"http://127.0.0.1:{port}/webhooks/perfectcorp"],
                           duration_mode="fixed", duration_median_s=0.5)
    for i in range(3):
        draw_product(tmp_path / f"{i}.jpg", (60 * i, 100, 30))
    rows = [{"id": str(i), "image_url": f"{i}.jpg", "prompt": "beach"} for i in range(3)]
    state, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"))
    assert list(df["status"]) == ["succeeded"] * 3
    assert list(df["polls"]) == [1, 1, 1]
    summary = state.result()
    assert summary["webhooks"]["verified"] == 3 and summary["webhooks"]["rejected"] == 0
    polls = [j for j in pipeline_env.journal() if j["method"] == "GET" and j.get("route") == "poll"]
    assert len(polls) == 3  # one poll per task, each after its delivery
