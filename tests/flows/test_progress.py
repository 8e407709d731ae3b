"""Progress counts rows, only ever moves forward, and ends at 100%, however the pictures' tasks finish.

Twelve rows: nine distinct pictures, two duplicate rows and one row preflight rejects, at concurrency 8 (a dry
run: pictures finish together and out of order, which once left a completed run's progress at 28%).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import flows.batch_run as batch_run
from tests.flows.helpers import write_csv
from tests.support.images import draw_product


async def _progress_artifact(flow_run_id: Any) -> float:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return float(next(a for a in found if a.key == "backdrop-progress").data)


def test_progress_counts_rows_moves_forward_and_ends_at_100(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.change_backgrounds import change_backgrounds
    from flows.progress import follow_progress

    rows = []
    for i in range(9):
        draw_product(tmp_path / f"p{i}.jpg", (200, 20 * i, 30))
        rows.append({"id": f"r{i}", "image_url": f"p{i}.jpg", "prompt": "beach"})
    rows += [{"id": "dup1", "image_url": "p0.jpg", "prompt": "beach"},
             {"id": "dup2", "image_url": "p1.jpg", "prompt": "beach"},
             {"id": "bad", "image_url": "missing.jpg", "prompt": "beach"}]
    csv = write_csv(tmp_path, rows)

    sent: list[float] = []
    real_update = batch_run.aupdate_progress_artifact

    async def recording_update(artifact_id: Any, progress: float) -> Any:  # a spy: the real update still happens
        await asyncio.sleep(0.01 * (len(sent) % 3))  # updates in flight together, as under load
        sent.append(progress)
        return await real_update(artifact_id, progress)

    monkeypatch.setattr(batch_run, "aupdate_progress_artifact", recording_update)
    events: list[tuple[int, int, str]] = []
    lock = threading.Lock()

    def on_progress(done: int, total: int, status: str) -> None:
        with lock:
            events.append((done, total, status))

    with follow_progress(change_backgrounds, on_progress) as followed:
        state = asyncio.run(followed(csv=str(csv), out=str(tmp_path / "out"), dry_run=True, concurrency=8,
                                     return_state=True))
    assert state.is_completed()
    assert asyncio.run(_progress_artifact(state.state_details.flow_run_id)) == 100.0
    assert sent and sent[-1] == 100.0 and sent == sorted(set(sent)), sent  # forward only, never repeated
    with lock:
        assert {total for _, total, _ in events} == {12}  # rows, not the 9 unique pictures
        assert max(done for done, _, _ in events) == 12
        assert min(done for done, _, _ in events) >= 2  # the rejected row was done before any picture
