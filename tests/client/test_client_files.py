"""Upload slot (both header shapes, both routes) and the presigned PUT (exact headers, no auth)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from backdrop.errors import Forbidden, InvalidParameters
from tests.client.helpers import KEY, Recorder, api_json, body_json, image_bytes, make_client

pytestmark = pytest.mark.anyio

FILE_ID = "pfNK5PuRe0MrwLHcGA3DOmB1ahwfXTbYHjv+KoBIxbE="
PUT_URL = "https://bucket.test/demo/ttl30/abc.jpg?X-Amz-Signature=s1g&X-Amz-Expires=3600"


def slot_body(headers: object) -> dict:
    return {"status": 200, "data": {"files": [{
        "content_type": "image/jpeg", "file_name": "photo.jpg", "file_id": FILE_ID,
        "requests": [{"method": "PUT", "url": PUT_URL, "headers": headers}],
    }]}}


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Length": "1234", "Content-Type": "image/jpeg"},
        [
            {"name": "Content-Length", "value": 1234},
            {"name": "Content-Type", "value": "image/jpeg"},
        ],
    ],
    ids=["object", "name-value-list"],
)
async def test_request_upload_normalises_both_header_shapes(headers: object) -> None:
    api = Recorder([api_json(200, slot_body(headers), request_id="rid-9")])
    async with make_client(api, feature="bg-replace") as client:
        slot = await client.request_upload(
            file_name="photo.jpg", content_type="image/jpeg", file_size=1234
        )
    assert slot.file_id == FILE_ID
    assert slot.url == PUT_URL and slot.method == "PUT"
    assert slot.headers == {"Content-Length": "1234", "Content-Type": "image/jpeg"}
    assert slot.request_id == "rid-9"
    req = api.requests[0]
    assert (req.method, req.url.path) == ("POST", "/s2s/v2.0/file")
    item = {"content_type": "image/jpeg", "file_name": "photo.jpg", "file_size": 1234}
    assert body_json(api) == {"files": [item]}
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["user-agent"].startswith("backdrop/")


@pytest.mark.parametrize(
    ("feature", "file_route", "path"),
    [
        ("bg-replace-v2", "auto", "/s2s/v2.0/file/bg-replace-v2"),
        ("bg-replace", "auto", "/s2s/v2.0/file"),
        ("bg-replace", "feature", "/s2s/v2.0/file/bg-replace"),
        ("bg-replace-v2", "universal", "/s2s/v2.0/file"),
    ],
)
async def test_upload_route_follows_settings(feature: str, file_route: str, path: str) -> None:
    api = Recorder([api_json(200, slot_body({}))])
    async with make_client(api, feature=feature, file_route=file_route) as client:
        await client.request_upload(file_name="a.png", content_type="image/png", file_size=5)
    assert api.requests[0].url.path == path


async def test_upload_file_puts_the_bytes_with_exactly_the_slot_headers(tmp_path: Path) -> None:
    data = image_bytes(size=(300, 200)) * 4  # > one read chunk is not needed; content must match
    src = tmp_path / "photo.jpg"
    src.write_bytes(data)
    headers = [
        {"name": "Content-Length", "value": str(len(data))},
        {"name": "Content-Type", "value": "image/jpeg"},
        {"name": "x-amz-meta-owner", "value": "backdrop"},
    ]
    api = Recorder([api_json(200, slot_body(headers))])
    storage = Recorder([httpx.Response(200)])
    async with make_client(api, storage) as client:
        file_id = await client.upload_file(src, content_type="image/jpeg")
        stats = client.stats.snapshot()
    assert file_id == FILE_ID
    assert body_json(api)["files"][0] == {"content_type": "image/jpeg", "file_name": "photo.jpg",
                                          "file_size": len(data)}
    put = storage.requests[0]
    assert put.method == "PUT" and str(put.url) == PUT_URL
    assert storage.bodies[0] == data
    sent = {k.lower(): v for k, v in put.headers.items()}
    assert sent == {
        "host": "bucket.test",
        "content-length": str(len(data)),
        "content-type": "image/jpeg",
        "x-amz-meta-owner": "backdrop",
    }
    assert "authorization" not in sent
    requests: dict[str, int] = stats["requests"]  # type: ignore[assignment]
    assert (requests["file"], requests["put"], requests["create"]) == (1, 1, 0)


async def test_put_adds_content_length_only_when_the_slot_has_none(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(image_bytes("PNG"))
    api = Recorder([api_json(200, slot_body({"Content-Type": "image/png"}))])
    storage = Recorder([httpx.Response(200)])
    async with make_client(api, storage) as client:
        await client.upload_file(src, content_type="image/png", file_name="renamed.png")
    assert body_json(api)["files"][0]["file_name"] == "renamed.png"
    put = storage.requests[0]
    assert put.headers["content-length"] == str(src.stat().st_size)
    assert "transfer-encoding" not in put.headers


async def test_put_refuses_a_file_that_changed_size(tmp_path: Path) -> None:
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x" * 10)
    api = Recorder([api_json(200, slot_body({"Content-Length": "10"}))])
    storage = Recorder([httpx.Response(200)])
    async with make_client(api, storage) as client:
        slot = await client.request_upload(
            file_name="a.jpg", content_type="image/jpeg", file_size=10
        )
        src.write_bytes(b"x" * 11)
        with pytest.raises(InvalidParameters, match="11 bytes"):
            await client.put_file(slot, src)
    assert storage.requests == []


async def test_put_is_retried_with_a_fresh_stream_and_403_is_forbidden(tmp_path: Path) -> None:
    src = tmp_path / "a.jpg"
    src.write_bytes(b"0123456789")
    api = Recorder([api_json(200, slot_body({"Content-Length": "10"}))] * 2)
    storage = Recorder([httpx.ReadError("reset"), httpx.Response(503), httpx.Response(200),
                        httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>")])
    async with make_client(api, storage) as client:
        slot = await client.request_upload(
            file_name="a.jpg", content_type="image/jpeg", file_size=10
        )
        await client.put_file(slot, src)
        assert storage.bodies == [b"0123456789"] * 3
        with pytest.raises(Forbidden) as info:
            await client.put_file(slot, src)
    assert "X-Amz-Signature" not in str(info.value)
    assert len(storage.requests) == 4
