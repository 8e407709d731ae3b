"""A run's `csv` and `out` parameters against the roots, judged by what the Prefect server stored.

Whoever may start a run chooses these parameters; the API key must not come back through the run's state or
its logs, and nothing may be paid for a run whose output folder is refused.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import LogSort

from backdrop.cli.run import _run_flow
from tests.flows.helpers import write_csv
from tests.support.images import draw_product

SECRET = "sk-live-TOPSECRET-0123456789"


async def _stored(flow_run_id: Any) -> tuple[str, str]:
    """The run's state message and every log line the Prefect server stored for it."""
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                      sort=LogSort.TIMESTAMP_ASC)
    return run.state.message or "", "\n".join(log.message for log in logs)


def _run(**params: Any) -> tuple[Any, str, str]:
    from flows.change_backgrounds import change_backgrounds

    state = asyncio.run(change_backgrounds(**params, return_state=True))
    message, logs = asyncio.run(_stored(state.state_details.flow_run_id))
    return state, message, logs


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside pytest's temporary folder, the session's one root."""
    folder = Path(tempfile.mkdtemp(prefix="backdrop-outside-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("csv", ["/proc/self/environ", "file:///proc/self/environ"])
def test_the_environment_as_csv_is_refused_and_the_key_is_stored_nowhere(
        pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, csv: str) -> None:
    monkeypatch.setenv("BACKDROP_API_KEY", SECRET)
    state, message, logs = _run(csv=csv, out=str(tmp_path / "out"))
    assert state.is_failed()
    assert "is refused" in message and csv in message, message
    assert SECRET not in message and SECRET not in logs
    assert "BACKDROP_API_KEY=" not in message + logs
    assert pipeline_env.journal() == []  # nothing reached the API


def test_a_csv_in_the_roots_that_holds_the_key_never_brings_it_back(
        pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same file content /proc/self/environ had, copied into a root: the error quotes a few characters."""
    monkeypatch.setenv("BACKDROP_API_KEY", SECRET)
    (tmp_path / "environ.csv").write_bytes(f"BACKDROP_API_KEY={SECRET}\0LAUNCH_NOTE=product-x\0".encode())
    state, message, logs = _run(csv=str(tmp_path / "environ.csv"), out=str(tmp_path / "out"))
    assert state.is_failed() and "missing the column 'image_url'" in message, message
    assert SECRET not in message and SECRET not in logs
    assert "product-x" not in message + logs  # the rest of the file is not quoted either


def test_a_csv_outside_the_roots_or_behind_a_symlink_that_leaves_them_is_refused(
        pipeline_env: Any, tmp_path: Path, outside: Path) -> None:
    draw_product(outside / "a.jpg", (200, 30, 30))
    csv = write_csv(outside, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])
    (tmp_path / "link.csv").symlink_to(csv)
    for location in (str(csv), str(tmp_path / "link.csv")):
        state, message, _ = _run(csv=location, out=str(tmp_path / "out"))
        assert state.is_failed() and "outside the folders runs may read" in message, message
    assert pipeline_env.journal() == [] and not (tmp_path / "out").exists()


def test_an_output_folder_outside_the_roots_is_refused_before_anything_is_paid(
        pipeline_env: Any, tmp_path: Path, outside: Path) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    csv = write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])
    (tmp_path / "escape").symlink_to(outside, target_is_directory=True)
    for out in (outside / "out", tmp_path / "escape" / "out", tmp_path / ".." / ".." / "elsewhere"):
        state, message, _ = _run(csv=str(csv), out=str(out))
        assert state.is_failed() and "outside the folders runs may write" in message, message
    assert pipeline_env.journal() == []  # no upload, no create: nothing paid
    assert pipeline_env.ledger()["charges"] == []
    assert list(outside.iterdir()) == []


def test_the_cli_default_roots_run_the_readme_example_from_the_current_folder(
        pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`backdrop run photos.csv --out results/` in the folder that holds the CSV, no roots set."""
    monkeypatch.delenv("BACKDROP_INPUT_ROOTS")
    monkeypatch.delenv("BACKDROP_OUTPUT_ROOTS")
    work = tmp_path / "work"
    work.mkdir()
    draw_product(work / "mug.jpg", (200, 30, 30))
    (work / "photos.csv").write_text('id,image_url,prompt,sku\nmug,mug.jpg,"white marble countertop",BD-1001\n')
    monkeypatch.chdir(work)
    params = dict(csv="photos.csv", out="results/", prompt=None, template_id=None, input_mode="upload",
                  concurrency=8, max_units=400, dry_run=False, feature=None, fit_inputs=False)
    assert _run_flow(params, as_json=True) == 0
    assert (work / "results" / "mug.jpg").is_file() and (work / "results" / "report.csv").is_file()
    capsys.readouterr()
    assert _run_flow({**params, "out": str(outside / "results")}, as_json=True) == 2
    assert "outside the folders runs may write" in capsys.readouterr().err
    assert _run_flow({**params, "csv": "/proc/self/environ"}, as_json=True) == 2
    assert "outside the folders runs may read" in capsys.readouterr().err
