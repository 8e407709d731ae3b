"""Wait task: poll one vendor task until it ends. Polls are free of charge and safe to repeat."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from backdrop.pipeline import steps
from tasks.policies import SAFE_TO_RETRY, row_run_name
from tasks.resources import task_resources


@task(
    name="wait",
    cache_policy=NO_CACHE,
    **SAFE_TO_RETRY,
    task_run_name=row_run_name("wait", "task_id"),
)
async def wait_for_result(
    task_id: str, feature: str, run_key: str, first_delay: float | None = None, label: str = "",
    since_created: float = 0.0,
) -> steps.PollResult:
    """Poll `task_id` until success or error; raises PollDeadlineExceeded at the poll deadline.

    `run_key` (the flow run's id) names the run whose poll planner times the polls: the planner itself comes
    with the run's resources (`tasks/resources.py`). `label` (the row id) names the task run only.
    """
    async with task_resources() as res:
        settings = res.settings(feature)
        return await steps.wait_for_task(
            res.client(settings), task_id, settings, sleep=asyncio.sleep, first_delay=first_delay,
            planner=res.planner(settings), receiver=res.receiver, since_created=since_created,
        )
