"""Lost creates are never re-created blindly: the credit history settles them in a later run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.flows.conftest import draw_product, run_flow, write_csv


def _creates(sandbox: Any) -> list[dict[str, Any]]:
    return [j for j in sandbox.journal() if j["method"] == "POST" and j.get("route") == "create"]


def _batch(tmp_path: Path, n: int = 1) -> Path:
    for i in range(n):
        draw_product(tmp_path / f"{i}.jpg", (200, 30 + 40 * i, 30))
    return write_csv(tmp_path, [{"id": f"r{i}", "image_url": f"{i}.jpg", "prompt": "beach"} for i in range(n)])


def test_a_lost_create_is_recovered_from_the_credit_history(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = _batch(tmp_path)
    pipeline_env.configure(fault_lost_create_rate=1.0, fault_routes=["create"])
    _, first = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert (first.loc[0, "status"], first.loc[0, "error_code"]) == ("pending_reconcile", "ambiguous_create")
    [made] = pipeline_env.tasks()  # the vendor did make (and charge) the task

    pipeline_env.configure(fault_lost_create_rate=0.0)
    monkeypatch.setenv("BACKDROP_RECONCILE_AFTER_SECONDS", "0")
    state, second = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert (second.loc[0, "status"], second.loc[0, "task_id"]) == ("succeeded", made["task_id"])
    assert len(_creates(pipeline_env)) == 1  # no second create, no second charge
    assert pipeline_env.ledger()["starting_balance"] - pipeline_env.ledger()["balance"] == 4
    assert state.result()["units_difference"] == 0


def test_a_lost_create_that_charged_nothing_is_made_again(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = _batch(tmp_path)
    pipeline_env.configure(fault_5xx_rate=1.0, fault_routes=["create"])  # 5xx: maybe created, maybe not
    _, first = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert first.loc[0, "status"] == "pending_reconcile"
    assert pipeline_env.tasks() == []

    pipeline_env.configure(fault_5xx_rate=0.0)
    monkeypatch.setenv("BACKDROP_RECONCILE_AFTER_SECONDS", "0")
    _, second = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert second.loc[0, "status"] == "succeeded"
    assert not bool(second.loc[0, "possible_duplicate"])
    assert len(pipeline_env.tasks()) == 1


def test_lost_creates_are_matched_by_picture_never_swapped(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two lost creates of different pictures; the slower one is created first, so charges come out of order
    draw_product(tmp_path / "red.jpg", (200, 30, 30), size=(320, 240))
    draw_product(tmp_path / "blue.jpg", (30, 30, 200), size=(200, 300))
    rows = [{"id": "red", "image_url": "red.jpg", "prompt": "beach [[sandbox:duration=2]]"},
            {"id": "blue", "image_url": "blue.jpg", "prompt": "studio"}]
    csv = write_csv(tmp_path, rows)
    pipeline_env.configure(fault_lost_create_rate=1.0, fault_routes=["create"], duration_mode="fixed",
                           duration_median_s=0.1)
    run_flow(csv=str(csv), out=str(tmp_path / "out"), concurrency=1)
    pipeline_env.configure(fault_lost_create_rate=0.0)
    asyncio.run(_spend_elsewhere(pipeline_env, tmp_path))  # and a charge that is not ours at all
    made = {t["task_id"]: t for t in pipeline_env.tasks()}
    assert len(made) == 3

    monkeypatch.setenv("BACKDROP_RECONCILE_AFTER_SECONDS", "0")
    import time

    time.sleep(2.5)  # let the slow task finish and be charged
    _, df = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    rec = df.set_index("row_id")
    assert list(rec["status"]) == ["succeeded", "succeeded"]
    assert "beach" in made[rec.loc["red", "task_id"]]["prompt"]
    assert "studio" in made[rec.loc["blue", "task_id"]]["prompt"]
    assert (rec.loc["red", "width"], rec.loc["red", "height"]) == (320, 240)
    assert len(pipeline_env.tasks()) == 3  # nothing created again


def test_lost_creates_that_cannot_be_told_apart_wait_or_are_re_created_once_flagged(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    rows = [{"id": "beach", "image_url": "a.jpg", "prompt": "beach"},  # one picture, two prompts:
            {"id": "studio", "image_url": "a.jpg", "prompt": "studio"}]  # their results look alike
    csv = write_csv(tmp_path, rows)
    pipeline_env.configure(fault_lost_create_rate=1.0, fault_routes=["create"])
    run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert len(pipeline_env.tasks()) == 2

    pipeline_env.configure(fault_lost_create_rate=0.0)
    monkeypatch.setenv("BACKDROP_RECONCILE_AFTER_SECONDS", "0")
    _, waiting = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert list(waiting["status"]) == ["pending_reconcile"] * 2
    assert len(pipeline_env.tasks()) == 2

    monkeypatch.setenv("BACKDROP_AMBIGUOUS_POLICY", "recreate_once")
    state, recreated = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert list(recreated["status"]) == ["succeeded"] * 2
    assert list(recreated["possible_duplicate"]) == [True, True]
    assert state.result()["possible_duplicates"] == 2
    assert len(pipeline_env.tasks()) == 4
    # a later run reuses the pictures and still says they may have been paid twice
    _, later = run_flow(csv=str(csv), out=str(tmp_path / "out2"))
    assert list(later["reused"]) == [True, True] and list(later["possible_duplicate"]) == [True, True]


async def _spend_elsewhere(sandbox: Any, tmp_path: Path) -> None:
    """Another program on the same key makes one task (and is charged for it)."""
    from PIL import Image

    from backdrop.client import BackdropClient
    from backdrop.settings import BackdropSettings

    Image.new("RGB", (50, 50), (250, 250, 250)).save(tmp_path / "x.jpg")
    settings = BackdropSettings(api_url=sandbox.base_url, api_key=sandbox.api_key)
    async with BackdropClient(settings) as client:
        file_id = await client.upload_file(tmp_path / "x.jpg", content_type="image/jpeg")
        task_id = (await client.create_task(src_file_id=file_id, prompt="x")).task_id
        while (await client.get_task(task_id)).status == "running":
            await asyncio.sleep(0.02)
