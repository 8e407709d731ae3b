"""The API steps of one picture as Prefect tasks, for `backdrop.pipeline.lifecycle.RowLifecycle`.

The lifecycle (what to do with a picture, and what each outcome means for money) is plain Python in
`backdrop/pipeline/lifecycle.py`; this module only hands it the Prefect tasks that run each step with retries,
caching and a task run in the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backdrop.client import DownloadedFile
from backdrop.pipeline.plan import WorkItem
from backdrop.pipeline.steps import PollResult
from backdrop.settings import BackdropSettings
from tasks.create import create_background_task
from tasks.download import download_result
from tasks.upload import upload_input
from tasks.wait import wait_for_result

__all__ = ["PrefectSteps"]


@dataclass(frozen=True)
class PrefectSteps:
    """Each API step of the lifecycle as its Prefect task."""

    settings: BackdropSettings
    environment: str
    ledger_url: str
    run_id: str
    key_id: str | None = None

    async def upload(self, item: WorkItem) -> str:
        # a file id is cached per key: uploads are free, and a rotated key need not see the old key's files
        p = item.prepared
        return await upload_input(p.sha256, p.path, p.content_type, self.settings.feature,
                                  f"{self.environment}-{self.key_id}", self.settings.upload_route,
                                  label=item.primary.row_id)

    async def create(self, item: WorkItem, attempt: int, file_id: str | None, file_url: str | None) -> str:
        return await create_background_task(item.key, attempt, self.settings.feature, self.ledger_url, file_id,
                                            file_url, item.prompt, item.template_id, item.task_type,
                                            label=item.primary.row_id)

    async def wait(self, task_id: str, first_delay: float | None, feature: str, label: str = "",
                   since_created: float = 0.0) -> PollResult:
        # `feature`: the slug the task was created under
        return await wait_for_result(task_id, feature, self.run_id, first_delay, label=label,
                                     since_created=since_created)

    async def download(self, task_id: str, result_url: str | None, dest: Path, feature: str,
                       label: str = "") -> DownloadedFile:
        return await download_result(task_id, result_url, str(dest), feature, label=label)

