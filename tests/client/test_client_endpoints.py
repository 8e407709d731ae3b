"""Bodies sent and envelopes read for tasks, templates and credits (contract sections 4, 5, 8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backdrop.client import CreditHistoryEntry, FeatureCost, Template
from backdrop.errors import InvalidParameters, ServerError
from tests.client.helpers import Recorder, api_json, body_json, make_client

pytestmark = pytest.mark.anyio

CREATED = {"status": 200, "data": {"task_id": "task-1"}}
URL = "https://img.test/a.jpg"
BIG_ID = 13105541279084536123


@pytest.mark.parametrize(
    ("kwargs", "sent"),
    [
        (
            {"src_file_id": "f+1/=", "prompt": "A sunny beach"},
            {"src_file_id": "f+1/=", "prompt": "A sunny beach"},
        ),
        (
            {"src_file_url": URL, "template_id": "nature_cherryblossom", "task_type": "template"},
            {"src_file_url": URL, "template_id": "nature_cherryblossom", "type": "template"},
        ),
        (
            {"src_file_id": "f1", "prompt": "", "task_type": "prompt"},
            {"src_file_id": "f1", "prompt": "", "type": "prompt"},
        ),
    ],
)
async def test_create_task_sends_only_the_given_fields(kwargs: dict, sent: dict) -> None:
    api = Recorder([api_json(200, CREATED, request_id="rid-c")])
    async with make_client(api, feature="bg-replace-v2") as client:
        created = await client.create_task(**kwargs)
    assert (created.task_id, created.request_id) == ("task-1", "rid-c")
    assert api.requests[0].method == "POST"
    assert api.requests[0].url.path == "/s2s/v2.0/task/bg-replace-v2"
    assert body_json(api) == sent


@pytest.mark.parametrize("kwargs", [{}, {"src_file_id": "f", "src_file_url": URL}])
async def test_create_task_needs_exactly_one_source(kwargs: dict) -> None:
    api = Recorder()
    async with make_client(api) as client:
        with pytest.raises(InvalidParameters, match="exactly one"):
            await client.create_task(**kwargs)
    assert api.requests == []


@pytest.mark.parametrize(
    ("data", "status", "url", "error", "message"),
    [
        ({"error": None, "results": None, "task_status": "running"}, "running", None, None, None),
        (
            {"task_status": "success", "error": None, "results": {"url": "https://o.test/r?s=1"}},
            "success", "https://o.test/r?s=1", None, None,
        ),
        ({"task_status": "success", "results": {"output": [{"url": "https://out.test/o.jpg"}]}},
         "success", "https://out.test/o.jpg", None, None),
        (
            {"task_status": "error", "error": "error_decode_image", "error_message": "no decode"},
            "error", None, "error_decode_image", "no decode",
        ),
        # the literal string "None" seen from one client means "unknown"
        (
            {"task_status": "error", "error": "None", "error_message": "", "results": None},
            "error", None, None, None,
        ),
    ],
)
async def test_get_task_reads_the_poll_body(
    data: dict, status: str, url: str | None, error: str | None, message: str | None
) -> None:
    api = Recorder([api_json(200, {"status": 200, "data": data}, request_id="rid-p")])
    async with make_client(api, feature="bg-replace") as client:
        got = await client.get_task("abc_DEF-123")
    assert (got.task_id, got.status, got.result_url, got.error, got.error_message) == (
        "abc_DEF-123", status, url, error, message)
    assert got.request_id == "rid-p"
    assert api.requests[0].url.path == "/s2s/v2.0/task/bg-replace/abc_DEF-123"


async def test_get_task_quotes_the_id_into_one_path_segment() -> None:
    api = Recorder([api_json(200, {"status": 200, "data": {"task_status": "running"}})])
    async with make_client(api) as client:
        await client.get_task("../credit")
    assert api.requests[0].url.raw_path == b"/s2s/v2.0/task/bg-replace/..%2Fcredit"


async def test_get_task_retries_a_body_without_the_envelope() -> None:
    running = {"status": 200, "data": {"task_status": "running"}}
    api = Recorder([api_json(200, {"status": 200}), api_json(200, running)])
    async with make_client(api) as client:
        assert (await client.get_task("t")).status == "running"
    assert len(api.requests) == 2


async def test_list_templates_follows_next_token_to_the_end() -> None:
    pages = [
        {"status": 200, "data": {"next_token": "MjA6MA", "templates": [
            {"id": "nature_cherryblossom", "title": "Cherry", "thumb": "https://t/1",
             "category_name": "Nature"}]}},
        {"status": 200, "data": {"templates": [{"id": "city_night"}], "next_token": "NDA6MA"}},
        {"status": 200, "data": {"templates": [{"id": "white", "title": "W"}], "next_token": None}},
    ]
    api = Recorder([api_json(200, p) for p in pages])
    async with make_client(api, feature="bg-replace") as client:
        templates = await client.list_templates(page_size=1)
    assert templates == [
        Template(
            id="nature_cherryblossom", title="Cherry", thumb="https://t/1", category_name="Nature"
        ),
        Template(id="city_night"),
        Template(id="white", title="W"),
    ]
    assert [r.url.path for r in api.requests] == ["/s2s/v2.0/task/template/bg-replace"] * 3
    assert [dict(r.url.params) for r in api.requests] == [
        {"page_size": "1"}, {"page_size": "1", "starting_token": "MjA6MA"},
        {"page_size": "1", "starting_token": "NDA6MA"}]


async def test_pagination_that_repeats_a_token_stops_with_an_error() -> None:
    page = {"status": 200, "result": {"skus": [], "next_token": "same"}}
    api = Recorder([api_json(200, page)])
    async with make_client(api) as client:
        with pytest.raises(ServerError, match="repeats next_token"):
            await client.feature_costs()
    assert len(api.requests) == 2


async def test_credit_balance_sums_non_expired_lots_and_keeps_big_ids() -> None:
    now = datetime.now(UTC)
    future = int((now + timedelta(days=30)).timestamp() * 1000)
    past = int((now - timedelta(days=1)).timestamp() * 1000)
    body = {"status": 200, "results": [
        {"id": BIG_ID, "type": "ApiSubsToken", "amount": 10, "amount_dec": 10.04, "expiry": future},
        {"id": BIG_ID + 1, "type": "ApiPaygToken", "amount_dec": 96.0, "expiry": past},
        {"id": "77", "type": "ApiPaygToken", "amount": 5},
    ]}
    api = Recorder([api_json(200, body)])
    async with make_client(api) as client:
        balance = await client.credit_balance()
    assert api.requests[0].url.path == "/s2s/v1.0/client/credit"
    assert balance.total == pytest.approx(15.04)
    assert [lot.id for lot in balance.lots] == [str(BIG_ID), str(BIG_ID + 1), "77"]
    assert balance.lots[0].id == "13105541279084536123"  # beyond 2**53, every digit kept
    assert balance.lots[0].expiry == datetime.fromtimestamp(future / 1000, tz=UTC)
    assert balance.lots[2].amount == 5.0 and balance.lots[2].expiry is None


async def test_credit_history_pages_and_stops_at_max_pages() -> None:
    credits = [{"id": 1, "amount": -2, "amount_dec": -2.5}, {"id": 2, "amount": -1}]
    entry = {"id": 38173479337460984123, "timestamp": 1703146067000, "action": "change_background",
             "target_id": "task-1", "info": {"credits": credits}}
    second = {**entry, "id": 5, "target_id": None}
    pages = [{"status": 200, "result": {"history": [entry], "next_token": "p2"}},
             {"status": 200, "result": {"history": [second], "next_token": "p3"}}]
    api = Recorder([api_json(200, p) for p in pages])
    async with make_client(api) as client:
        history = await client.credit_history(page_size=1, max_pages=2)
    assert history[0] == CreditHistoryEntry(
        id="38173479337460984123", timestamp=datetime(2023, 12, 21, 8, 7, 47, tzinfo=UTC),
        action="change_background", target_id="task-1", units=-3.5)
    assert history[1].id == "5" and history[1].target_id is None
    assert len(api.requests) == 2
    assert dict(api.requests[0].url.params) == {"page_size": "1"}
    assert api.requests[0].url.path == "/s2s/v1.0/client/credit/history"


async def test_feature_costs_read_result_skus() -> None:
    run = "https://yce-api-01.makeupar.com/s2s/v2.0/task/bg-replace"
    body = {"status": 200, "result": {"next_token": None, "skus": [
        {"description": "AI Photo Background Change V2.0", "amount": 4, "unit": "result_image",
         "proc_unit": 1, "run_task_url": run},
        {"description": "Video", "amount": 2, "unit": "second"}]}}
    api = Recorder([api_json(200, body)])
    async with make_client(api) as client:
        costs = await client.feature_costs(page_size=20)
    assert costs == [
        FeatureCost(description="AI Photo Background Change V2.0", amount=4.0,
                    unit="result_image", proc_unit=1.0, run_task_url=run),
        FeatureCost(description="Video", amount=2.0, unit="second"),
    ]
    assert api.requests[0].url.path == "/s2s/v2.0/credit/feature-cost"


async def test_a_row_missing_its_id_is_a_bad_body_not_a_key_error() -> None:
    no_id = {"status": 200, "result": {"history": [{"action": "x"}], "next_token": None}}
    api = Recorder([api_json(200, no_id)])
    async with make_client(api) as client:
        with pytest.raises(ServerError, match="unexpected response body"):
            await client.credit_history()


async def test_delete_task_posts_the_id() -> None:
    api = Recorder([api_json(200, {"status": 200})])
    async with make_client(api) as client:
        assert await client.delete_task("task-1") is None
        assert client.stats.requests["delete"] == 1
    assert (api.requests[0].method, api.requests[0].url.path) == ("POST", "/s2s/v2.0/task/delete")
    assert body_json(api) == {"task_id": "task-1"}
