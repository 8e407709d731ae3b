"""`polling_interval` is read from create and poll answers (seconds; nonsense ignored), and the documented poll
500 TaskTimeout is raised once, not retried, against the sandbox over loopback HTTP."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from backdrop.client import _parse
from backdrop.errors import TaskTimeout
from tests.client.test_against_sandbox import client_for, finished, write_jpeg


@pytest.mark.parametrize(("raw", "seconds"), [
    (5, 5.0), (2.5, 2.5), ("4", 4.0), (" 7.5 ", 7.5), (1, 1.0), (3600, 3600.0),
    (None, None), (0, None), (-3, None), (0.2, None), (3601, None), (5000, None), (True, None), (False, None),
    ("soon", None), ("", None), (math.nan, None), (math.inf, None), ("nan", None), ([5], None), ({"s": 5}, None),
])
def test_polling_interval_is_seconds_and_nonsense_is_ignored(raw: Any, seconds: float | None) -> None:
    data = {"task_status": "running", "polling_interval": raw}
    assert _parse.polling_interval(data) == seconds
    assert _parse.task_status("t", data, None).polling_interval == seconds


def test_no_polling_interval_field_is_none() -> None:
    assert _parse.polling_interval({"task_status": "running"}) is None
    assert _parse.polling_interval(None) is None


@pytest.mark.anyio
async def test_the_client_reads_polling_interval_from_the_sandboxs_answers(sandbox: Any, tmp_path: Path) -> None:
    sandbox.configure(rate_limit_enabled=False, polling_interval_s=4, duration_mode="fixed", duration_median_s=0.2)
    async with client_for(sandbox) as client:
        file_id = await client.upload_file(write_jpeg(tmp_path / "a.jpg", (40, 30)), content_type="image/jpeg")
        created = await client.create_task(src_file_id=file_id, prompt="beach")
        assert created.polling_interval == 4.0
        done = await finished(client, created.task_id)
        assert (done.status, done.polling_interval) == ("success", 4.0)


@pytest.mark.anyio
async def test_task_timeout_is_raised_once_and_not_retried(sandbox: Any, tmp_path: Path) -> None:
    sandbox.configure(rate_limit_enabled=False, task_timeout_s=1, duration_mode="fixed", duration_median_s=100,
                      time_scale=100)
    async with client_for(sandbox) as client:
        file_id = await client.upload_file(write_jpeg(tmp_path / "a.jpg", (40, 30)), content_type="image/jpeg")
        task_id = (await client.create_task(src_file_id=file_id, prompt="beach")).task_id
        await asyncio.sleep(0.05)  # 5 vendor seconds: past the 1 s timeout
        before = len(sandbox.journal())
        with pytest.raises(TaskTimeout) as info:
            await client.get_task(task_id)
        assert info.value.status == 500 and info.value.report_code == "TaskTimeout"
        assert len(sandbox.journal()) == before + 1  # one request: every later poll would say the same


@pytest.mark.anyio
async def test_an_upload_sends_no_authorization_so_the_s3_like_storage_takes_it(sandbox: Any, tmp_path: Path) -> None:
    """The sandbox refuses a presigned PUT that carries Authorization (403), as S3 does: Backdrop's upload passes,
    and the task made from it succeeds."""
    sandbox.configure(rate_limit_enabled=False)
    async with client_for(sandbox) as client:
        file_id = await client.upload_file(write_jpeg(tmp_path / "a.jpg", (40, 30)), content_type="image/jpeg")
        task_id = (await client.create_task(src_file_id=file_id, prompt="beach")).task_id
        assert (await finished(client, task_id)).status == "success"
