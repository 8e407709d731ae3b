"""The client end to end against the real sandbox over loopback HTTP (fixture `sandbox`)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from backdrop.client import BackdropClient, TaskStatus
from backdrop.errors import (
    AmbiguousCreate,
    AuthError,
    CreditInsufficiency,
    Forbidden,
    InvalidTaskId,
    NotFound,
)
from backdrop.pacing.memory import SlidingWindowLimiter
from backdrop.settings import BackdropSettings
from tests.client.helpers import NoWait

pytestmark = pytest.mark.anyio


def settings_for(sandbox: Any, **overrides: Any) -> BackdropSettings:
    fields: dict[str, Any] = {
        "api_url": sandbox.base_url,
        "api_key": sandbox.api_key,
        "feature": "bg-replace",
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
    }
    return BackdropSettings(**{**fields, **overrides})


def client_for(sandbox: Any, *, limiter: Any = None, **overrides: Any) -> BackdropClient:
    return BackdropClient(settings_for(sandbox, **overrides), limiter=limiter or NoWait())


@pytest.fixture
def box(sandbox: Any) -> Any:
    """The sandbox without its rate limit: these tests are about routes and bodies."""
    sandbox.configure(rate_limit_enabled=False)
    return sandbox


def write_jpeg(path: Path, size: tuple[int, int]) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", size, (20, 120, 220)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    return path


async def finished(client: BackdropClient, task_id: str) -> TaskStatus:
    for _ in range(100):
        status = await client.get_task(task_id)
        if status.status != "running":
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} still running")


async def upload(client: BackdropClient, tmp_path: Path, size: tuple[int, int] = (120, 90)) -> str:
    src = write_jpeg(tmp_path / "in.jpg", size)
    return await client.upload_file(src, content_type="image/jpeg")


async def make_result(
    client: BackdropClient, tmp_path: Path, prompt: str = "a sunny beach"
) -> tuple[str, TaskStatus]:
    file_id = await upload(client, tmp_path)
    created = await client.create_task(src_file_id=file_id, prompt=prompt)
    return created.task_id, await finished(client, created.task_id)


@pytest.mark.parametrize(
    ("feature", "shape", "file_path"),
    [
        ("bg-replace", "object", "/s2s/v2.0/file"),
        ("bg-replace-v2", "list", "/s2s/v2.0/file/bg-replace-v2"),
    ],
)
async def test_upload_create_poll_download_round_trip(
    box: Any, tmp_path: Path, feature: str, shape: str, file_path: str
) -> None:
    box.configure(upload_headers_shape=shape)
    src = write_jpeg(tmp_path / "product.jpg", (320, 240))
    async with client_for(box, feature=feature) as client:
        before = await client.credit_balance()
        file_id = await client.upload_file(src, content_type="image/jpeg")
        created = await client.create_task(src_file_id=file_id, prompt="a beach with palm trees")
        status = await finished(client, created.task_id)
        assert (status.status, status.error) == ("success", None)
        assert status.result_url is not None
        got = await client.download(status.result_url, tmp_path / "out" / "product.jpg")
        after = await client.credit_balance()
        history = await client.credit_history()
        stats = client.stats.snapshot()

    assert (got.format, got.width, got.height) == ("jpeg", 320, 240)
    assert got.sha256 == hashlib.sha256(got.path.read_bytes()).hexdigest()
    assert got.size == got.path.stat().st_size
    assert sorted(p.name for p in got.path.parent.iterdir()) == ["product.jpg"]
    assert before.total - after.total == 4
    assert [(c["task_id"], c["units"]) for c in box.ledger()["charges"]] == [(created.task_id, 4)]
    charge = next(h for h in history if h.target_id == created.task_id)
    assert (charge.action, charge.units) == ("change_background", -4.0)
    paths = [j["path"] for j in box.journal()]
    assert file_path in paths and f"/s2s/v2.0/task/{feature}" in paths
    requests: dict[str, int] = stats["requests"]  # type: ignore[assignment]
    assert [requests[r] for r in ("file", "put", "create", "download")] == [1, 1, 1, 1]
    assert stats["http_429"] == 0 and stats["retries"] == 0


async def test_templates_paginate_and_a_template_task_runs_from_a_url(
    box: Any, tmp_path: Path
) -> None:
    async with client_for(box) as client:
        templates = await client.list_templates(page_size=4)
        thumb = templates[0].thumb
        assert thumb is not None
        created = await client.create_task(
            src_file_url=thumb, template_id=templates[1].id, task_type="template"
        )
        status = await finished(client, created.task_id)
        got = await client.download(status.result_url or "", tmp_path / "t.jpg")
    assert len(templates) > 4 and len({t.id for t in templates}) == len(templates)
    assert templates[0].id == "nature_cherryblossom" and templates[0].category_name == "Nature"
    template_calls = [j for j in box.journal() if j["path"] == "/s2s/v2.0/task/template/bg-replace"]
    assert len(template_calls) == -(-len(templates) // 4)
    assert (got.format, got.width, got.height) == ("jpeg", 96, 64)


async def test_feature_costs_list_bg_replace_at_four_units(box: Any) -> None:
    async with client_for(box) as client:
        costs = await client.feature_costs(page_size=2)
        pages = client.stats.requests["feature_cost"]
    bg = [c for c in costs if (c.run_task_url or "").endswith("/s2s/v2.0/task/bg-replace")]
    assert [(c.description, c.amount, c.unit, c.proc_unit) for c in bg] == [
        ("AI Photo Background Change V2.0", 4.0, "result_image", 1.0)]
    assert len(costs) > 2 and pages == -(-len(costs) // 2)


async def test_delete_removes_the_task_and_its_result(box: Any, tmp_path: Path) -> None:
    async with client_for(box) as client:
        task_id, status = await make_result(client, tmp_path)
        await client.delete_task(task_id)
        with pytest.raises(NotFound):
            await client.download(status.result_url or "", tmp_path / "gone.jpg")
        with pytest.raises(InvalidTaskId):
            await client.get_task(task_id)
    assert not (tmp_path / "gone.jpg").exists() and not (tmp_path / "gone.jpg.part").exists()
    assert box.ledger()["balance"] == box.ledger()["starting_balance"] - 4  # no refund


async def test_an_expired_result_url_is_forbidden_and_a_new_poll_renews_it(
    box: Any, tmp_path: Path
) -> None:
    box.configure(result_url_ttl_s=0.001)
    async with client_for(box) as client:
        task_id, status = await make_result(client, tmp_path)
        await asyncio.sleep(0.01)
        with pytest.raises(Forbidden) as info:
            await client.download(status.result_url or "", tmp_path / "r.jpg")
        assert "signature=" not in str(info.value)
        box.configure(result_url_ttl_s=7200)
        fresh = await client.get_task(task_id)
        got = await client.download(fresh.result_url or "", tmp_path / "r.jpg")
    assert got.format == "jpeg" and (got.width, got.height) == (120, 90)


async def test_engine_error_is_returned_and_not_charged(box: Any, tmp_path: Path) -> None:
    async with client_for(box) as client:
        prompt = "[[sandbox:error=error_decode_image]] beach"
        _, status = await make_result(client, tmp_path, prompt=prompt)
    assert (status.status, status.error, status.result_url) == ("error", "error_decode_image", None)
    assert box.ledger()["charges"] == []


async def test_wrong_key_is_an_auth_error(box: Any) -> None:
    async with client_for(box, api_key="definitely-not-valid") as client:
        with pytest.raises(AuthError) as poll:
            await client.get_task("x" * 64)
        with pytest.raises(AuthError) as credit:
            await client.credit_balance()
    assert poll.value.status == 401 and poll.value.error_code == "InvalidApiKey"
    assert credit.value.error_code == "InvalidAccessToken"
    assert poll.value.request_id
    for err in (poll.value, credit.value):
        assert "definitely-not-valid" not in str(err) and "definitely-not-valid" not in repr(err)


async def test_a_bogus_feature_slug_is_a_404_naming_the_setting(box: Any) -> None:
    settings = settings_for(box).model_copy(update={"feature": "bg-bogus"})
    async with BackdropClient(settings, limiter=NoWait()) as client:
        with pytest.raises(NotFound) as create:
            await client.create_task(src_file_url="https://img.invalid/a.jpg", prompt="x")
        with pytest.raises(NotFound) as poll:
            await client.get_task("x" * 64)
    for err in (create.value, poll.value):
        assert "the API has no route for feature 'bg-bogus'" in str(err)
        assert "set BACKDROP_FEATURE to bg-replace or bg-replace-v2" in str(err)
    assert box.tasks() == []


async def test_unknown_task_id_is_invalid_task_id(box: Any) -> None:
    async with client_for(box) as client:
        with pytest.raises(InvalidTaskId) as info:
            await client.get_task("grH0CvsgXuAIHLUzD0V1Ol34hoet3R1tvdbtiVHrDb6_UqCLKIejAIaj")
    assert (info.value.status, info.value.error_code) == (400, "InvalidTaskId")


async def test_not_enough_units_is_credit_insufficiency(box: Any, tmp_path: Path) -> None:
    box.set_balance(3)
    async with client_for(box) as client:
        file_id = await upload(client, tmp_path, (40, 40))
        with pytest.raises(CreditInsufficiency):
            await client.create_task(src_file_id=file_id, prompt="beach")
        assert client.stats.requests["create"] == 1
    assert box.tasks() == []


async def test_a_create_whose_answer_is_lost_is_ambiguous_and_not_repeated(
    box: Any, tmp_path: Path
) -> None:
    async with client_for(box) as client:
        file_id = await upload(client, tmp_path, (40, 40))
        with pytest.raises(AmbiguousCreate) as info:
            await client.create_task(src_file_id=file_id, prompt="[[sandbox:lost]] beach")
        assert client.stats.requests["create"] == 1 and client.stats.retries == 0
    assert "reconcile" in str(info.value)
    assert len(box.tasks()) == 1  # it did exist: only reconciliation can find it
    assert sum(1 for j in box.journal() if j["path"] == "/s2s/v2.0/task/bg-replace") == 1


async def test_429_under_tiny_sandbox_limits_is_retried_and_succeeds(sandbox: Any) -> None:
    sandbox.configure(rate_limit_enabled=True, rate_limit_per_second=1)
    client = client_for(sandbox, max_retries=12, backoff_base_seconds=0.3, backoff_max_seconds=0.6)
    async with client:
        first = await client.credit_balance()
        second = await client.credit_balance()  # within the same second: refused, then retried
        stats = client.stats.snapshot()
    assert first.total == second.total
    assert stats["http_429"] >= 1 and stats["retries"] == stats["http_429"]
    statuses = [j["status"] for j in sandbox.journal()]
    assert statuses[0] == 200 and statuses[-1] == 200 and 429 in statuses


async def test_the_client_limiter_keeps_a_burst_under_the_sandbox_limit(sandbox: Any) -> None:
    # 2 per 0.25 s on the server; the client allows itself 2 per 0.5 s
    sandbox.configure(rate_limit_enabled=True, rate_limit_per_second=2, time_scale=4)
    limiter = SlidingWindowLimiter([(2, 0.5)])
    async with client_for(sandbox, limiter=limiter) as client:
        await asyncio.gather(*(client.credit_balance() for _ in range(6)))
        assert client.stats.http_429 == 0
    assert [j["status"] for j in sandbox.journal()] == [200] * 6
