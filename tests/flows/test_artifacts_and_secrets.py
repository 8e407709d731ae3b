"""What a run publishes (artifacts, final state) and what it must never publish (the API key)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


async def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key}


def test_run_publishes_summary_failures_and_progress(pipeline_env: Any, tmp_path: Path) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    rows = [{"id": "a", "image_url": "a.jpg", "prompt": "beach"},
            {"id": "bad", "image_url": "missing.jpg", "prompt": "beach"}]
    state, _ = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"))
    arts = asyncio.run(_artifacts(state.state_details.flow_run_id))
    assert {"backdrop-summary", "backdrop-failures", "backdrop-progress", "backdrop-gallery"} <= set(arts)
    gallery = Path(str(arts["backdrop-gallery"].data).split("\n\n")[1].strip())  # a path to copy, not a file:// link
    assert gallery == (tmp_path / "out" / "gallery.html").resolve() and gallery.is_file()
    assert "file://" not in str(arts["backdrop-gallery"].data)
    summary = arts["backdrop-summary"].data
    # the pictures are inside the artifact: the contact sheet, and the failed row's input beside its error
    images = re.findall(r"!\[([^\]]*)\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", summary)
    assert [alt for alt, _ in images] == ["contact sheet: inputs and results", "bad"] or \
        [alt for alt, _ in images] == ["contact sheet: inputs and results"]  # a missing input has no thumbnail
    sheet = Image.open(io.BytesIO(base64.b64decode(images[0][1])))
    assert sheet.format == "JPEG" and sheet.width <= 960 and len(images[0][1]) < 200_000
    assert "| bad | failed | input_not_found |" in summary and "file://" not in summary
    assert "| 2 | 1 | 1 | 0 | 0 | 0 |" in summary and "`input_not_found` | 1" in summary
    assert "**Units charged:** 4 on 1 rows" in summary
    assert "input_not_found" in str(arts["backdrop-failures"].data)
    assert float(arts["backdrop-progress"].data) == 100.0


def test_the_api_key_never_reaches_logs_results_reports_or_files(
    pipeline_env: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    key = pipeline_env.api_key
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    (tmp_path / "bad.jpg").write_text("x")
    rows = [{"id": "a", "image_url": "a.jpg", "prompt": "beach"},
            {"id": "e", "image_url": "a.jpg", "prompt": "p [[sandbox:error=error_inference]]"},
            {"id": "bad", "image_url": "bad.jpg", "prompt": "beach"}]
    caplog.set_level(logging.DEBUG)
    state, _ = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(tmp_path / "out"))
    arts = asyncio.run(_artifacts(state.state_details.flow_run_id))

    printed = capfd.readouterr()
    assert key not in printed.out + printed.err
    assert key not in caplog.text
    assert key not in str([a.data for a in arts.values()])
    assert key not in str(state.result())
    written = [tmp_path / "out", tmp_path / "home", Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value())]
    for folder in written:
        for path in folder.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path
