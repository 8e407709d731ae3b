"""Which requests repeat, how often, and how long they wait (the sleep is injected and recorded)."""

from __future__ import annotations

import random

import httpx
import pytest

from backdrop.client import BackdropClient
from backdrop.errors import (
    AmbiguousCreate,
    AuthError,
    Forbidden,
    InvalidParameters,
    NotFound,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    TaskTimeout,
)
from tests.client.helpers import (
    NoWait,
    Recorder,
    SleepRecorder,
    api_json,
    make_client,
    make_settings,
)

pytestmark = pytest.mark.anyio

RUNNING = {"status": 200, "data": {"task_status": "running", "error": None, "results": None}}
CREATED = {"status": 200, "data": {"task_id": "task-1"}}
TOO_MANY = {"status": 429, "error": "Too many requests"}
BOOM = {"status": 500, "error": "unknown_internal_error"}


class CeilingRng(random.Random):
    """Always picks the top of the jitter range, to expose the backoff ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_get_retries_429_and_5xx_then_succeeds() -> None:
    api = Recorder([api_json(429, TOO_MANY), api_json(503, BOOM), api_json(200, RUNNING)])
    sleep, limiter = SleepRecorder(), NoWait()
    async with make_client(api, sleep=sleep, limiter=limiter) as client:
        status = await client.get_task("task-1")
        stats = client.stats.snapshot()
    assert status.status == "running"
    assert len(api.requests) == 3
    assert limiter.acquired == 3  # every attempt is paced, retries included
    assert limiter.settled == [1, 2, 3]  # and settled when its answer came, refusals included
    assert len(sleep.delays) == 2
    assert stats["http_429"] == 1 and stats["retries"] == 2
    assert stats["requests"]["poll"] == 3  # type: ignore[index]


async def test_backoff_ceilings_grow_exponentially_and_are_capped() -> None:
    api = Recorder([api_json(500, BOOM)] * 5 + [api_json(200, RUNNING)])
    sleep = SleepRecorder()
    client = BackdropClient(
        make_settings(max_retries=5, backoff_base_seconds=1.0, backoff_max_seconds=5.0),
        limiter=NoWait(), transport=api.transport, sleep=sleep, rng=CeilingRng(),
    )
    async with client:
        await client.get_task("task-1")
    assert sleep.delays == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_backoff_is_fully_jittered_below_each_ceiling() -> None:
    api = Recorder([api_json(500, BOOM)] * 6 + [api_json(200, RUNNING)])
    sleep = SleepRecorder()
    async with make_client(
        api, sleep=sleep, max_retries=6, backoff_base_seconds=0.5, backoff_max_seconds=8.0, seed=3
    ) as client:
        await client.get_task("task-1")
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(sleep.delays) == 6
    assert all(0.0 <= d <= c for d, c in zip(sleep.delays, ceilings, strict=False))
    assert sleep.delays != ceilings  # jittered, not the bare ceilings
    assert len(set(sleep.delays)) == 6


async def test_get_gives_up_after_max_retries() -> None:
    api = Recorder([api_json(500, BOOM)])
    sleep = SleepRecorder()
    async with make_client(api, sleep=sleep, max_retries=3) as client:
        with pytest.raises(ServerError) as info:
            await client.get_task("task-1")
        stats = client.stats.snapshot()
    assert info.value.status == 500
    assert len(api.requests) == 4 and len(sleep.delays) == 3
    assert stats["retries"] == 3


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
)
async def test_get_retries_transport_errors(exc: Exception) -> None:
    api = Recorder([exc, api_json(200, RUNNING)])
    async with make_client(api) as client:
        assert (await client.get_task("task-1")).status == "running"
        assert client.stats.transport_errors == 1 and client.stats.retries == 1


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), NotSent),
        (httpx.ConnectTimeout("slow connect"), NotSent),
        (httpx.PoolTimeout("pool"), NotSent),
        (httpx.ReadTimeout("slow"), OutcomeUnknown),
        (httpx.ReadError("reset"), OutcomeUnknown),
        (httpx.WriteError("broken pipe"), OutcomeUnknown),
        (httpx.WriteTimeout("slow write"), OutcomeUnknown),
        (httpx.RemoteProtocolError("eof"), OutcomeUnknown),
    ],
)
async def test_transport_errors_map_by_whether_the_request_was_sent(
    exc: Exception, expected: type[Exception]
) -> None:
    api = Recorder([exc])
    async with make_client(api, max_retries=0) as client:
        with pytest.raises(expected) as info:
            await client.credit_balance()
    assert isinstance(info.value.__cause__, type(exc))
    assert "GET https://api.test/s2s/v1.0/client/credit" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"status": 400, "error": "x", "error_code": "InvalidParameters"}, InvalidParameters),
        (401, {"status": 401, "error": "Invalid API key"}, AuthError),
        (403, {"status": 403, "error": "no"}, Forbidden),
        (404, {"status": 404, "error": "no"}, NotFound),
        # polling a timed-out task again cannot help
        (500, {"status": 500, "error_code": "TaskTimeout"}, TaskTimeout),
    ],
)
async def test_get_does_not_retry_client_errors(
    status: int, body: dict, expected: type[Exception]
) -> None:
    api = Recorder([api_json(status, body)])
    sleep = SleepRecorder()
    async with make_client(api, sleep=sleep) as client:
        with pytest.raises(expected):
            await client.get_task("task-1")
    assert len(api.requests) == 1 and sleep.delays == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("no answer"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("eof"),
        httpx.WriteTimeout("slow"),
        # a 500, the documented missing-upload one included
        api_json(500, {"status": 500, "error": "unknown_internal_error"}, request_id="rid-miss"),
        api_json(500, {"status": 500, "error": "Internal Server Error"}, request_id="rid-500"),
        api_json(502, "bad gateway", request_id="rid-502"),
        # answered, but without a task_id
        api_json(200, {"status": 200, "data": {}}, request_id="rid-200"),
        httpx.Response(200, text="<html>proxy</html>"),
    ],
)
async def test_create_is_never_retried_once_it_may_have_arrived(failure: object) -> None:
    api = Recorder([failure, api_json(200, CREATED)])  # type: ignore[list-item]
    sleep = SleepRecorder()
    async with make_client(api, sleep=sleep) as client:
        with pytest.raises(AmbiguousCreate) as info:
            await client.create_task(src_file_id="file-1", prompt="beach")
    assert len(api.requests) == 1
    assert sleep.delays == []
    err = info.value
    assert "reconcile" in str(err)
    if isinstance(failure, httpx.Response) and "x-request-id" in failure.headers:
        assert err.request_id == failure.headers["x-request-id"]
        assert err.status == failure.status_code
    if isinstance(failure, Exception):
        assert isinstance(err.__cause__, OutcomeUnknown)
        assert isinstance(err.__cause__.__cause__, type(failure))


@pytest.mark.parametrize(
    "refusal",
    [
        api_json(429, TOO_MANY),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.PoolTimeout("x"),
    ],
)
async def test_create_is_retried_when_refused_or_never_sent(refusal: object) -> None:
    api = Recorder([refusal, refusal, api_json(200, CREATED)])  # type: ignore[list-item]
    sleep = SleepRecorder()
    async with make_client(api, sleep=sleep) as client:
        created = await client.create_task(src_file_id="file-1", prompt="beach")
    assert created.task_id == "task-1"
    assert len(api.requests) == 3 and len(sleep.delays) == 2


async def test_create_raises_rate_limited_when_429_persists() -> None:
    api = Recorder([api_json(429, TOO_MANY)])
    async with make_client(api, max_retries=2) as client:
        with pytest.raises(RateLimited):
            await client.create_task(src_file_url="https://img.test/a.jpg")
        assert client.stats.http_429 == 3
    assert len(api.requests) == 3


async def test_create_is_not_retried_on_400() -> None:
    low = {"status": 400, "error": "low", "error_code": "CreditInsufficiency"}
    api = Recorder([api_json(400, low)])
    async with make_client(api) as client:
        with pytest.raises(Exception) as info:
            await client.create_task(src_file_id="file-1")
    assert type(info.value).__name__ == "CreditInsufficiency"
    assert len(api.requests) == 1


async def test_delete_is_not_repeated_after_a_lost_answer() -> None:
    api = Recorder([httpx.ReadTimeout("lost"), api_json(200, {"status": 200})])
    async with make_client(api) as client:
        with pytest.raises(OutcomeUnknown):
            await client.delete_task("task-1")
    assert len(api.requests) == 1


async def test_upload_slot_post_is_retried_on_5xx() -> None:
    put = {"method": "PUT", "url": "https://bucket.test/up", "headers": {"Content-Type": "a/b"}}
    slot = {"status": 200, "data": {"files": [{"file_id": "f1", "requests": [put]}]}}
    api = Recorder([api_json(500, BOOM), httpx.ReadTimeout("lost"), api_json(200, slot)])
    async with make_client(api) as client:
        got = await client.request_upload(
            file_name="a.jpg", content_type="image/jpeg", file_size=10
        )
    assert got.file_id == "f1" and len(api.requests) == 3
