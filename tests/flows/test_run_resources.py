"""The run's resources (tasks/resources.py) reach every task run of the flow through the context, and a task
called outside a flow gets short-lived ones of its own."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.resources import RunResources, current_resources, run_resources, task_resources


@task(cache_policy=NO_CACHE)
async def _async_sees() -> tuple[int | None, int]:
    res = current_resources()
    return (id(res) if res else None), threading.get_ident()


@task(cache_policy=NO_CACHE)
def _sync_sees() -> tuple[int | None, int]:
    res = current_resources()
    return (id(res) if res else None), threading.get_ident()


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
async def _flow() -> dict[str, Any]:
    async with run_resources() as res:
        on_loop = await _async_sees()
        in_thread = _sync_sees.submit().result()
        rows = await asyncio.gather(*(asyncio.create_task(_async_sees()) for _ in range(3)))
        return {"res": id(res), "on_loop": on_loop, "in_thread": in_thread, "rows": rows,
                "flow_thread": threading.get_ident()}


def test_prefect_copies_the_run_resources_into_async_and_threaded_task_runs() -> None:
    seen = asyncio.run(_flow())
    assert seen["on_loop"][0] == seen["res"]  # an async task, awaited on the flow's loop
    assert {r[0] for r in seen["rows"]} == {seen["res"]}  # each picture's asyncio task copies the context
    assert seen["in_thread"][0] == seen["res"]  # a sync task in a worker thread: copy_context()
    assert seen["in_thread"][1] != seen["flow_thread"]
    assert current_resources() is None  # and nothing is left behind


def test_a_task_outside_a_flow_opens_and_closes_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_API_KEY", "k")
    closed: list[RunResources] = []
    real_close = RunResources.aclose

    async def spy(self: RunResources) -> None:
        closed.append(self)
        await real_close(self)

    monkeypatch.setattr(RunResources, "aclose", spy)

    async def call() -> tuple[RunResources, Any]:
        async with task_resources() as res:
            return res, res.client(res.settings())

    res, _client = asyncio.run(call())
    assert closed == [res] and current_resources() is None


def test_the_run_shares_one_client_per_loop_and_one_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_API_KEY", "k")

    async def run() -> tuple[bool, bool, bool, Any]:
        async with run_resources() as res:
            s = res.settings()
            same_client = res.client(s) is res.client(res.settings())
            same_planner = res.planner(s) is res.planner(s)
            async with task_resources() as inner:
                shared = inner is res
            return same_client, same_planner, shared, res.traffic()

    same_client, same_planner, shared, traffic = asyncio.run(run())
    assert same_client and same_planner and shared
    assert traffic.total == 0
