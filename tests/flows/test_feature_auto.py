"""BACKDROP_FEATURE=auto against the sandbox (issue 14): each feature-cost list the account may have, through HTTP.

The run reads the list before its first upload, creates under the slug it names (bg-replace when both) with that
slug's upload route, reports the slug in the summary, refuses template rows on bg-replace-v2 at preflight, and,
when the list names neither, says so in one line and creates nothing (a dry run goes on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


def _batch(tmp_path: Path) -> Path:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    draw_product(tmp_path / "b.jpg", (30, 30, 200))
    return write_csv(tmp_path, [{"id": "p", "image_url": "a.jpg", "prompt": "beach", "template_id": ""},
                                {"id": "t", "image_url": "b.jpg", "prompt": "", "template_id": "studio_white"}])


def _paths(sandbox: Any) -> list[str]:
    return [j["path"] for j in sandbox.journal()]


@pytest.mark.parametrize("listed", ["both", "bg-replace"])
def test_a_list_with_bg_replace_creates_under_it_with_the_universal_upload(pipeline_env: Any, tmp_path: Path,
                                                                           listed: str) -> None:
    pipeline_env.configure(feature_cost_slugs=listed)
    state, df = run_flow(csv=str(_batch(tmp_path)), out=str(tmp_path / "out"))
    summary = state.result()
    assert list(df["status"]) == ["succeeded", "succeeded"] and list(df["units_charged"]) == [4, 4]
    assert summary["feature"] == "bg-replace" and summary["feature_note"] is None
    paths = _paths(pipeline_env)
    assert paths.index("/s2s/v2.0/credit/feature-cost") < paths.index("/s2s/v2.0/file")  # read before uploading
    assert not [p for p in paths if p.startswith("/s2s/v2.0/file/")]
    assert {t["slug"] for t in pipeline_env.tasks()} == {"bg-replace"}


def test_a_list_with_bg_replace_v2_only_creates_under_it_and_refuses_template_rows(pipeline_env: Any,
                                                                                  tmp_path: Path) -> None:
    pipeline_env.configure(feature_cost_slugs="bg-replace-v2")
    state, df = run_flow(csv=str(_batch(tmp_path)), out=str(tmp_path / "out"))
    summary = state.result()
    assert summary["feature"] == "bg-replace-v2" and state.name == "Completed with failures"
    p, t = df.iloc[0], df.iloc[1]
    assert (p["status"], p["units_charged"]) == ("succeeded", 4)
    assert (t["status"], t["failed_stage"], t["error_code"], t["units_charged"]) == \
        ("failed", "preflight", "template_unsupported", 0)
    assert "no templates" in t["error_message"]
    assert [(x["slug"], x["template_id"]) for x in pipeline_env.tasks()] == [("bg-replace-v2", None)]
    assert "/s2s/v2.0/file/bg-replace-v2" in _paths(pipeline_env)  # the per-feature upload route
    assert summary["failures_by_code"] == {"template_unsupported": 1}


@pytest.mark.parametrize("cause", ["none", "unreadable"])
def test_no_known_slug_creates_nothing_and_says_why_in_one_line(pipeline_env: Any, tmp_path: Path,
                                                                caplog: Any, cause: str) -> None:
    if cause == "none":
        pipeline_env.configure(feature_cost_slugs="none")
    else:
        pipeline_env.configure(fault_routes=["feature_cost"], fault_5xx_rate=1.0)
    state, df = run_flow(csv=str(_batch(tmp_path)), out=str(tmp_path / "out"))
    summary = state.result()
    assert list(df["status"]) == ["skipped", "skipped"] and set(df["error_code"]) == {"feature_unknown"}
    assert df["units_charged"].sum() == 0 and pipeline_env.tasks() == []
    assert not [p for p in _paths(pipeline_env) if p.startswith(("/s2s/v2.0/file", "/s2s/v2.0/task"))]
    note = summary["feature_note"]
    assert summary["feature"] is None and "\n" not in note and "nothing is created" in note
    assert ("names neither" if cause == "none" else "could not be read") in note
    assert note in df.loc[0, "error_message"]
    assert [r for r in caplog.records if r.levelname == "WARNING" and note in r.getMessage()]


def test_a_dry_run_goes_on_without_a_known_slug(pipeline_env: Any, tmp_path: Path) -> None:
    pipeline_env.configure(feature_cost_slugs="none")
    state, df = run_flow(csv=str(_batch(tmp_path)), out=str(tmp_path / "out"), dry_run=True)
    summary = state.result()
    assert list(df["status"]) == ["skipped", "skipped"] and set(df["error_code"]) == {"dry_run"}
    assert summary["feature"] is None and "this dry run assumes bg-replace" in summary["feature_note"]
    assert summary["estimated_units"] == 8 and pipeline_env.tasks() == []


def test_the_flow_parameter_forces_a_slug_and_the_list_is_not_read(pipeline_env: Any, tmp_path: Path) -> None:
    pipeline_env.configure(feature_cost_slugs="none")
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    csv = write_csv(tmp_path, [{"id": "p", "image_url": "a.jpg", "prompt": "beach"}])
    state, df = run_flow(csv=str(csv), out=str(tmp_path / "out"), feature="bg-replace-v2")
    assert state.result()["feature"] == "bg-replace-v2" and list(df["status"]) == ["succeeded"]
    assert "/s2s/v2.0/credit/feature-cost" not in _paths(pipeline_env)
    assert [t["slug"] for t in pipeline_env.tasks()] == ["bg-replace-v2"]
