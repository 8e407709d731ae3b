"""Upload task: request a slot and PUT the staged picture. Free and safe to retry; cached on content."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from backdrop.pipeline import steps
from tasks.policies import CACHE_TTL, SAFE_TO_RETRY, UPLOAD_POLICY, row_run_name
from tasks.resources import task_resources


@task(
    name="upload",
    cache_policy=UPLOAD_POLICY,
    cache_expiration=CACHE_TTL,
    **SAFE_TO_RETRY,
    task_run_name=row_run_name("upload", "image_sha256"),
)
async def upload_input(
    image_sha256: str, path: str, content_type: str, feature: str, environment: str, upload_route: str,
    label: str = "",
) -> str:
    """Upload the picture staged at `path`; returns the vendor's file id. `label` (the row id) names the task run
    only: the cache key is the picture's content (tasks/policies.py)."""
    async with task_resources() as res:
        settings = res.settings(feature)
        return await steps.upload_input(res.client(settings), Path(path), content_type, res.uploads(settings))
