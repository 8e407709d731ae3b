"""Run names: where the run came from, what it read and when; a name the user typed is kept (the deployment test
checks that through the API, as the Custom run form sends it)."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from pathlib import Path
from typing import Any

import prefect
import pytest
from prefect.client.orchestration import get_client

from flows.naming import is_generated
from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


async def _name(flow_run_id: Any) -> str:
    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).name


@pytest.mark.parametrize(("name", "generated"), [
    ("crimson-wolf", True), ("", True), (None, True),
    ("Gorgeous-Puggle", True), ("Tasty-Vicuña", True),  # what the V2 UI's run form fills in (Prefect 3.8.8)
    ("Spring catalogue", False), ("spring-catalogue-fix", False), ("Crimson-wolf", False), ("manual/x", False),
    ("Spring-Catalogue-2", False), ("SKU-Batch", False),
    # typed names spelt like the form's: capitalised, two words, but not the form's adjective or not an animal of
    # at most 6 letters
    ("Spring-Catalogue", False), ("Black-Friday", False), ("Summer-Sale", False), ("Gorgeous-Catalogue", False)])
def test_only_a_made_up_name_is_replaced(name: str | None, generated: bool) -> None:
    assert is_generated(name) is generated


def test_every_name_the_installed_v2_run_form_can_make_up_is_replaced() -> None:
    """The V2 UI's Custom run form fills Run Name with `<adjective>-<animal>` from word lists in its bundle; read
    them from the installed Prefect, so that an upgrade that changes them fails here rather than keeping made-up
    names (or renaming typed ones) unnoticed."""
    bundle = [p for p in (Path(prefect.__file__).parent / "server" / "ui-v2" / "assets").glob("*.js")
              if "Puggle" in p.read_text(encoding="utf-8")]
    assert len(bundle) == 1, "the V2 UI's run-name word lists moved: check flows/naming.py against them"
    js = bundle[0].read_text(encoding="utf-8")
    adjectives = re.findall(r"`(\w+)`", re.search(r"\[[^\]]*`Gorgeous`[^\]]*\]", js).group(0))  # type: ignore[union-attr]
    animals_js = re.search(r"`([^`]*\.Puggle\.[^`]*)`", js).group(1)  # type: ignore[union-attr]
    longest = int(re.search(r"maxCharCount:(\d+)", js).group(1))  # type: ignore[union-attr]
    animals = [a for a in animals_js.split(".") if len(a) <= longest]
    assert len(adjectives) >= 10 and len(animals) >= 100
    assert [f"{a}-{b}" for a in adjectives for b in animals if not is_generated(f"{a}-{b}")] == []


def test_a_local_batch_is_named_by_its_csv_and_start_time(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    csv = write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])
    state, _ = run_flow(csv=str(csv), out=str(tmp_path / "out"), dry_run=True)
    name = asyncio.run(_name(state.state_details.flow_run_id))
    assert re.fullmatch(r"local/dry-run batch \d{4}-\d\d-\d\d \d\d:\d\dZ", name), name


def test_a_cost_run_is_named_by_its_period(pipeline_env: Any, tmp_path: Path) -> None:
    from flows.cost_report import cost_report

    state = asyncio.run(cost_report(since=date(2026, 11, 1), out=str(tmp_path / "cost"), return_state=True))
    name = asyncio.run(_name(state.state_details.flow_run_id))
    assert re.fullmatch(r"local/cost 2026-11-01 to today \d{4}-\d\d-\d\d \d\d:\d\dZ", name), name


async def _task_run_names(flow_run_id: Any) -> list[str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [r.name for r in runs]


def test_every_step_s_task_run_is_named_by_its_row(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    draw_product(tmp_path / "b.jpg", (30, 200, 30))
    rows = [{"id": "mug-blue", "image_url": "a.jpg", "prompt": "beach"},
            {"id": "lamp\twhite " + "x" * 60, "image_url": "b.jpg", "prompt": "beach"}]
    state, _ = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"))
    names = set(asyncio.run(_task_run_names(state.state_details.flow_run_id)))
    long_label = ("lamp?white " + "x" * 60)[:40]  # printable, at most 40 characters
    steps = {"upload-{}", "create-{}-a1", "wait-{}", "download-{}"}
    assert {s.format(label) for s in steps for label in ("mug-blue", long_label)} <= names, names
