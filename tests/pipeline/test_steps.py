"""The API steps without Prefect, on the real client against the loopback sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from backdrop.client import BackdropClient
from backdrop.errors import AmbiguousCreate, PollDeadlineExceeded
from backdrop.pipeline import steps
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger
from tests.support.images import save_picture


def _settings(sandbox: Any, **kw: Any) -> BackdropSettings:
    base = dict(api_url=sandbox.base_url, api_key=sandbox.api_key, feature="bg-replace", poll_first_seconds=0.0,
                poll_interval_seconds=0.01, poll_max_interval_seconds=0.05, backoff_base_seconds=0.01)
    return BackdropSettings(**{**base, **kw})


def _picture(tmp_path: Path) -> Path:
    return save_picture(tmp_path / "p.jpg", 200, 100, (250, 250, 250))


@pytest.mark.anyio
async def test_create_records_the_task_id_before_returning(sandbox: Any, tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    async with BackdropClient(_settings(sandbox)) as client:
        file_id = await steps.upload_input(client, _picture(tmp_path), "image/jpeg")
        ledger.claim("k", 1, run_id="r")
        task_id = await steps.create_task(client, ledger, key="k", attempt=1, src_file_id=file_id,
                                          src_file_url=None, prompt="beach", template_id=None,
                                          task_type="prompt")
    entry = ledger.latest("k")
    assert (entry.status, entry.task_id, entry.file_id) == ("created", task_id, file_id)
    assert [t["task_id"] for t in sandbox.tasks()] == [task_id]


@pytest.mark.anyio
async def test_a_lost_create_answer_is_ambiguous_in_the_ledger_and_not_retried(
    sandbox: Any, tmp_path: Path
) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    async with BackdropClient(_settings(sandbox)) as client:
        file_id = await steps.upload_input(client, _picture(tmp_path), "image/jpeg")
        ledger.claim("k", 1, run_id="r")
        with pytest.raises(AmbiguousCreate):
            await steps.create_task(client, ledger, key="k", attempt=1, src_file_id=file_id,
                                    src_file_url=None, prompt="x [[sandbox:lost]]", template_id=None,
                                    task_type="prompt")
    assert ledger.latest("k").status == "ambiguous"
    assert len(sandbox.tasks()) == 1  # the vendor did create it, exactly once


@pytest.mark.anyio
async def test_wait_gives_up_at_the_deadline_without_failing_the_task(sandbox: Any, tmp_path: Path) -> None:
    sandbox.configure(duration_mode="fixed", duration_median_s=3600.0)
    clock = [0.0]

    async def fake_sleep(seconds: float) -> None:
        clock[0] += seconds

    settings = _settings(sandbox, poll_deadline_seconds=30.0, poll_first_seconds=5.0,
                         poll_interval_seconds=5.0, poll_max_interval_seconds=10.0)
    async with BackdropClient(settings) as client:
        file_id = await steps.upload_input(client, _picture(tmp_path), "image/jpeg")
        task_id = (await client.create_task(src_file_id=file_id, prompt="beach")).task_id
        with pytest.raises(PollDeadlineExceeded) as err:
            await steps.wait_for_task(client, task_id, settings, sleep=fake_sleep, now=lambda: clock[0])
    assert err.value.task_id == task_id
    assert clock[0] == pytest.approx(30.0)  # slept exactly up to the deadline, not past it
    polls = [j for j in sandbox.journal() if j["method"] == "GET" and task_id in j["path"]]
    assert 3 <= len(polls) <= 5  # 5 s, then backing off towards 10 s


@pytest.mark.anyio
async def test_wait_reports_the_gap_since_the_task_was_last_seen_running(sandbox: Any, tmp_path: Path) -> None:
    """The poll that finds the task done says how long it can have waited: since the last `running`."""
    clock = [0.0]

    async def sleep(seconds: float) -> None:  # the sandbox lives in real time; the gap is read on `clock`
        clock[0] += seconds
        await asyncio.sleep(seconds)

    settings = _settings(sandbox, poll_strategy="fixed", poll_first_seconds=0.1, poll_interval_seconds=0.1)
    async with BackdropClient(settings) as client:
        file_id = await steps.upload_input(client, _picture(tmp_path), "image/jpeg")
        task_id = (await client.create_task(src_file_id=file_id, prompt="x [[sandbox:duration=0.35]]")).task_id
        polled = await steps.wait_for_task(client, task_id, settings, sleep=sleep, now=lambda: clock[0])
    assert polled.status.status == "success" and polled.polls >= 3
    assert polled.gap_seconds == pytest.approx(0.1)  # one interval, not the whole wait (>= 0.3 s)


@pytest.mark.anyio
async def test_download_renews_an_expired_result_url(sandbox: Any, tmp_path: Path) -> None:
    async with BackdropClient(_settings(sandbox)) as client:
        file_id = await steps.upload_input(client, _picture(tmp_path), "image/jpeg")
        task_id = (await client.create_task(src_file_id=file_id, prompt="beach")).task_id
        polled = await steps.wait_for_task(client, task_id, _settings(sandbox), sleep=_no_sleep)
        expired = polled.status.result_url
        sandbox.configure(result_url_ttl_s=0.001)
        expired = (await client.get_task(task_id)).result_url  # valid for a millisecond...
        await asyncio.sleep(0.05)
        sandbox.configure(result_url_ttl_s=7200.0)  # ...fresh ones are good again
        got = await steps.download_result(client, task_id, expired, tmp_path / "out.jpg")
    assert (got.width, got.height, got.format) == (200, 100, "jpeg")
    assert steps.file_sha256(got.path) == got.sha256


async def _no_sleep(_s: float) -> None:
    return None
