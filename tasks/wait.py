"""Wait task: poll one vendor task until it ends. Polls are free of charge and safe to repeat."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from backdrop.pipeline import steps
from tasks.policies import retry_if_transient
from tasks.runtime import client_for, planner_for, receiver, settings_for


@task(
    name="wait",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_transient,
    task_run_name="wait-{task_id:.12}",
)
async def wait_for_result(
    task_id: str, feature: str, run_key: str, first_delay: float | None = None
) -> steps.PollResult:
    """Poll `task_id` until success or error; raises PollDeadlineExceeded at the poll deadline."""
    settings = settings_for(feature)
    return await steps.wait_for_task(
        client_for(settings), task_id, settings, sleep=asyncio.sleep, first_delay=first_delay,
        planner=planner_for(run_key, settings), receiver=receiver(),
    )
