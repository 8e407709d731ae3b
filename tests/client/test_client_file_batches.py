"""`request_uploads`: several files in one File API call against the real sandbox, one slot per file in order,
each PUT on its own; a refused batch surfaces as the vendor's 400, a short answer as fewer slots (the pipeline's
batcher decides what that means)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from backdrop.client.models import FileSpec
from backdrop.errors import InvalidParameters
from tests.client.helpers import NoWait, Recorder, api_json, make_client
from tests.client.test_against_sandbox import client_for

pytestmark = pytest.mark.anyio


def _pictures(folder: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (40 + i, 30), (20 * i, 90, 160)).save(buf, "JPEG")
        path = folder / f"p{i}.jpg"
        path.write_bytes(buf.getvalue())
        out.append(path)
    return out


def _specs(paths: list[Path]) -> list[FileSpec]:
    return [{"content_type": "image/jpeg", "file_name": p.name, "file_size": p.stat().st_size} for p in paths]


@pytest.mark.parametrize("feature", ["bg-replace", "bg-replace-v2"])
async def test_one_call_gives_a_slot_per_file_and_each_put_lands(sandbox: Any, tmp_path: Path,
                                                                 feature: str) -> None:
    sandbox.configure(rate_limit_enabled=False)
    paths = _pictures(tmp_path, 3)
    async with client_for(sandbox, feature=feature) as client:
        slots = await client.request_uploads(_specs(paths))
        assert [s.file_name for s in slots] == ["p0.jpg", "p1.jpg", "p2.jpg"]
        for slot, path in zip(slots, paths, strict=True):
            await client.put_file(slot, path)
        assert client.stats.snapshot()["requests"]["file"] == 1
    files = [e for e in sandbox.journal() if e.get("route") == "file"]
    assert len(files) == 1
    uploaded = [e for e in sandbox.journal() if e.get("route") == "storage_upload" and e["status"] == 200]
    assert len(uploaded) == 3


async def test_a_refused_batch_is_the_vendors_400_and_a_short_answer_has_fewer_slots(sandbox: Any,
                                                                                     tmp_path: Path) -> None:
    sandbox.configure(rate_limit_enabled=False, file_batch="refuse")
    specs = _specs(_pictures(tmp_path, 2))
    async with client_for(sandbox) as client:
        with pytest.raises(InvalidParameters) as refused:
            await client.request_uploads(specs)
        assert refused.value.status == 400
        sandbox.configure(file_batch="fewer_slots")
        assert len(await client.request_uploads(specs)) == 1


async def test_more_is_asked_once_as_the_request_leaves_and_rides_in_the_same_call(sandbox: Any,
                                                                                  tmp_path: Path) -> None:
    """`more` is asked after the rate limiter's wait, once, and its files get their slots in the same call."""
    sandbox.configure(rate_limit_enabled=False)
    specs = _specs(_pictures(tmp_path, 3))
    asked: list[int] = []

    def more() -> list[FileSpec]:
        asked.append(len(asked))
        return specs[1:]

    async with client_for(sandbox) as client:
        slots = await client.request_uploads(specs[:1], more=more)
        assert [s.file_name for s in slots] == ["p0.jpg", "p1.jpg", "p2.jpg"] and asked == [0]
        assert client.stats.snapshot()["requests"]["file"] == 1
    assert len([e for e in sandbox.journal() if e.get("route") == "file"]) == 1


async def test_more_is_asked_after_the_limiter_s_wait_and_a_retry_sends_the_same_files() -> None:
    """The files `more` adds are asked for once the limiter let the call go (not when it was made), and a retried
    call (a 503) sends the same body again without asking twice."""
    log: list[str] = []

    class Logging(NoWait):
        async def acquire(self, **kw: Any) -> int:
            log.append("limiter")
            return await super().acquire(**kw)

    def slots(request: httpx.Request) -> httpx.Response:
        files = json.loads(request.read())["files"]
        return api_json(200, {"status": 200, "data": {"files": [
            {"file_id": f"id-{f['file_name']}", "file_name": f["file_name"],
             "requests": [{"url": "https://s.example/put", "method": "PUT", "headers": {}}]} for f in files]}})

    api = Recorder([api_json(503, {"status": 503, "error": "busy"}), slots])
    extra: FileSpec = {"content_type": "image/jpeg", "file_name": "b.jpg", "file_size": 2}

    def more() -> list[FileSpec]:
        log.append("more")
        return [extra]

    async with make_client(api, limiter=Logging(), max_retries=2, backoff_base_seconds=0) as client:
        got = await client.request_uploads([{"content_type": "image/jpeg", "file_name": "a.jpg", "file_size": 1}],
                                           more=more)
    assert log == ["limiter", "more", "limiter"]
    assert [s.file_id for s in got] == ["id-a.jpg", "id-b.jpg"]
    sent = [[f["file_name"] for f in json.loads(body)["files"]] for body in api.bodies]
    assert sent == [["a.jpg", "b.jpg"], ["a.jpg", "b.jpg"]]
