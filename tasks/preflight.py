"""Preflight task: fetch and check one input picture. A rejection is a finding, returned, not raised."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from backdrop.errors import InputRejected
from backdrop.pipeline.preflight import PreparedInput, prepare_input
from tasks.resources import task_resources


@task(name="preflight", cache_policy=NO_CACHE, task_run_name="preflight-{label}")
async def preflight_input(
    source: str, base_dir: str | None, staging_dir: str, fit_inputs: bool, label: str
) -> PreparedInput | InputRejected:
    """Fetch `source` (URL or path in the CSV's folder), check it against the API's limits, stage it."""
    async with task_resources() as res:
        try:
            return await prepare_input(
                source,
                base_dir=Path(base_dir) if base_dir else None,
                staging_dir=Path(staging_dir),
                fit_inputs=fit_inputs,
                http=res.fetcher(),  # the run's fenced client: one SSL context a run, not one a picture
            )
        except InputRejected as rejected:
            return rejected
