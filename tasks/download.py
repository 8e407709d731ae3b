"""Download task: fetch a result to the output folder, atomically. Safe to retry."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from backdrop.client import DownloadedFile
from backdrop.pipeline import steps
from tasks.policies import SAFE_TO_RETRY, row_run_name
from tasks.resources import task_resources


@task(
    name="download",
    cache_policy=NO_CACHE,
    **SAFE_TO_RETRY,
    task_run_name=row_run_name("download", "task_id"),
)
async def download_result(
    task_id: str, result_url: str | None, dest: str, feature: str, label: str = ""
) -> DownloadedFile:
    """Download the result of `task_id` to `dest` (renewing an expired URL by polling again). `label` (the row
    id) names the task run only."""
    async with task_resources() as res:
        client = res.client(res.settings(feature))
        return await steps.download_result(client, task_id, result_url, Path(dest))
