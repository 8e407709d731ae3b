"""Create task: the one paid call. Never retried; its task id is in the ledger before it returns."""

from __future__ import annotations

from typing import Literal

from prefect import task

from backdrop.pipeline import steps
from backdrop.store.ledger import Ledger
from tasks.policies import CACHE_TTL, CREATE_POLICY, row_run_name
from tasks.resources import task_resources


@task(
    name="create",
    cache_policy=CREATE_POLICY,
    cache_expiration=CACHE_TTL,
    retries=0,  # a retried create is a second charge: see AmbiguousCreate
    task_run_name=row_run_name("create", "key", suffix="attempt"),
)
async def create_background_task(
    key: str,
    attempt: int,
    feature: str,
    ledger_url: str,
    src_file_id: str | None,
    src_file_url: str | None,
    prompt: str | None,
    template_id: str | None,
    task_type: Literal["prompt", "template"],
    label: str = "",
) -> str:
    """Create the background-change task for one picture; returns the vendor's task id. `label` (the row id)
    names the task run only: the cache key is the content key and the attempt (tasks/policies.py)."""
    async with task_resources() as res:
        settings = res.settings(feature)
        return await steps.create_task(
            res.client(settings), Ledger(ledger_url), key=key, attempt=attempt, src_file_id=src_file_id,
            src_file_url=src_file_url, prompt=prompt, template_id=template_id, task_type=task_type,
            planner=res.planner(settings),
        )
