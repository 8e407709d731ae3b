"""Upload task: request a slot and PUT the staged picture. Free and safe to retry; cached on content."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from backdrop.pipeline import steps
from tasks.policies import CACHE_TTL, UPLOAD_POLICY, retry_if_transient
from tasks.runtime import client_for, settings_for


@task(
    name="upload",
    cache_policy=UPLOAD_POLICY,
    cache_expiration=CACHE_TTL,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_transient,
    task_run_name="upload-{image_sha256:.12}",
)
async def upload_input(
    image_sha256: str, path: str, content_type: str, feature: str, environment: str, upload_route: str
) -> str:
    """Upload the picture staged at `path`; returns the vendor's file id."""
    client = client_for(settings_for(feature))
    return await steps.upload_input(client, Path(path), content_type)
