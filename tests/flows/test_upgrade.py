"""Upgrading Backdrop never pays again for a picture paid under the old content keys: those before issue 11 (URL
and key), and those before issue 14 (one environment per slug; now both slugs are one feature)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from backdrop.identity import CACHE_VERSION, environment_id, legacy_environment_id, slug_environment_id
from backdrop.pipeline.steps import file_sha256
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger, default_ledger_url
from backdrop.store.schema import work
from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


def _old_key(environment: str, image_sha256: str, prompt: str) -> str:
    """The content key as the previous release computed it: the prompt as written, the old account id."""
    parts = [CACHE_VERSION, environment, image_sha256, "prompt", prompt, ""]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def test_a_ledger_from_before_the_new_keys_is_moved_and_nothing_is_paid_again(
    pipeline_env: Any, tmp_path: Path
) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    csv = write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])
    _, first = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert len(pipeline_env.tasks()) == 1
    # rewrite the ledger as the previous release left it: old account id, prompt hashed as written ("beach  ")
    ledger = Ledger(default_ledger_url())
    [row] = ledger.entries()
    old_env = legacy_environment_id(BackdropSettings(), "bg-replace-v2")
    with ledger.engine.begin() as conn:
        conn.execute(work.delete())
        values = {k: getattr(row, k) for k in ("attempt", "status", "task_id", "units", "charged_run_id",
                                               "output_path", "output_sha256", "width", "height", "image_sha256")}
        conn.execute(insert(work).values(
            **values, environment=old_env, prompt="beach  ", row_id="a",
            content_key=_old_key(old_env, row.image_sha256 or "", "beach  "),
            created_at=datetime.now(UTC), updated_at=datetime.now(UTC), reported_at=datetime.now(UTC)))
    _, second = run_flow(csv=str(csv), out=str(tmp_path / "out2"))
    assert second.loc[0, "status"] == "succeeded" and bool(second.loc[0, "reused"])
    assert second.loc[0, "units_charged"] == 0 and len(pipeline_env.tasks()) == 1  # nothing paid again
    assert file_sha256(Path(second.loc[0, "output_path"])) == first.loc[0, "output_sha256"]
    assert {e.environment for e in ledger.entries()} != {old_env}


def test_pictures_paid_under_bg_replace_v2_are_reused_and_polled_under_it_by_a_run_on_bg_replace(
    pipeline_env: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """The old default slug's rows, keyed as the release before issue 14 keyed them (environment per slug, no
    recorded slug), are moved: a run that resolves to bg-replace reuses the paid picture, polls the one in flight
    under bg-replace-v2 (the sandbox answers InvalidTaskId under the other slug), and creates nothing."""
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    draw_product(tmp_path / "b.jpg", (30, 30, 200))
    csv = write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"},
                               {"id": "b", "image_url": "b.jpg", "prompt": "grey concrete floor"}])
    monkeypatch.setenv("BACKDROP_FEATURE", "bg-replace-v2")  # the old default
    _, first = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert list(first["status"]) == ["succeeded", "succeeded"]
    assert [t["slug"] for t in pipeline_env.tasks()] == ["bg-replace-v2"] * 2
    # rewrite the ledger as the release before issue 14 left it: b's create was sent, its end never seen
    settings = BackdropSettings()
    old_env = slug_environment_id(settings, "bg-replace-v2")
    ledger = Ledger(default_ledger_url())
    with ledger.engine.begin() as conn:
        for row in ledger.entries():
            values: dict[str, Any] = {"environment": old_env, "feature": None,
                                      "content_key": _old_key(old_env, row.image_sha256 or "", row.prompt or "")}
            if row.row_id == "b":
                values.update(status="created", units=0, charged_run_id=None, charged_at=None, output_path=None,
                              output_sha256=None)
            conn.execute(update(work).where(work.c.id == row.id).values(**values))
    monkeypatch.setenv("BACKDROP_FEATURE", "auto")
    pipeline_env.configure(feature_cost_slugs="both")  # resolves to bg-replace
    state, second = run_flow(csv=str(csv), out=str(tmp_path / "out2"))
    assert state.result()["feature"] == "bg-replace"
    assert len(pipeline_env.tasks()) == 2  # nothing created again
    a, b = second.iloc[0], second.iloc[1]
    assert (a["status"], bool(a["reused"]), a["units_charged"]) == ("succeeded", True, 0)
    assert (b["status"], bool(b["reused"]), b["units_charged"]) == ("succeeded", False, 4)  # its charge, reported
    assert b["task_id"] == first.loc[1, "task_id"]
    polls = [j["path"] for j in pipeline_env.journal() if j["path"].startswith("/s2s/v2.0/task/")]
    assert f"/s2s/v2.0/task/bg-replace-v2/{b['task_id']}" in polls
    assert not [p for p in polls if p.startswith("/s2s/v2.0/task/bg-replace/")]
    rows = ledger.entries()
    assert {(e.environment, e.feature) for e in rows} == {(environment_id(settings), "bg-replace-v2")}
