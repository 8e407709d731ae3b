"""Result downloads: atomic, capped, hashed, sniffed; nothing half-written is ever left behind."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from backdrop.errors import DownloadError, Forbidden, NotFound
from tests.client.helpers import Recorder, SleepRecorder, image_bytes, make_client

pytestmark = pytest.mark.anyio

URL = "https://out.test/results/r.jpg?X-Amz-Signature=abc&X-Amz-Expires=7200"


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def chunks(
    data: bytes, size: int = 1000, fail_after: int | None = None
) -> AsyncIterator[bytes]:
    for sent, start in enumerate(range(0, len(data), size)):
        if fail_after is not None and sent == fail_after:
            raise httpx.ReadError("connection reset mid-body")
        yield data[start:start + size]


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")])
async def test_download_sniffs_measures_and_hashes(tmp_path: Path, fmt: str, name: str) -> None:
    data = image_bytes(fmt, size=(321, 123))
    octet = {"Content-Type": "binary/octet-stream"}
    storage = Recorder([httpx.Response(200, content=data, headers=octet)])
    dest = tmp_path / "out" / "row-1.img"
    async with make_client(storage=storage) as client:
        got = await client.download(URL, dest)
        assert client.stats.requests["download"] == 1
    assert (got.path, got.format, got.width, got.height) == (dest, name, 321, 123)
    assert got.size == len(data)
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert dest.read_bytes() == data
    assert files_in(dest.parent) == ["row-1.img"]
    assert "authorization" not in storage.requests[0].headers


async def test_download_refuses_a_declared_length_over_the_cap(tmp_path: Path) -> None:
    data = image_bytes(size=(200, 200))
    storage = Recorder([httpx.Response(200, content=data)])
    async with make_client(storage=storage) as client:
        with pytest.raises(DownloadError, match=f"{len(data)} bytes, over the 100-byte cap"):
            await client.download(URL, tmp_path / "r.jpg", max_bytes=100)
    assert files_in(tmp_path) == []
    assert len(storage.requests) == 1  # not retried


async def test_download_aborts_a_stream_that_passes_the_cap(tmp_path: Path) -> None:
    data = image_bytes(size=(400, 400))
    storage = Recorder([lambda _req: httpx.Response(200, content=chunks(data))])
    async with make_client(storage=storage) as client:
        with pytest.raises(DownloadError, match="passed the 2500-byte cap while streaming"):
            await client.download(URL, tmp_path / "r.jpg", max_bytes=2500)
    assert "content-length" not in storage.requests[0].headers
    assert files_in(tmp_path) == []


async def test_download_cap_defaults_to_the_setting(tmp_path: Path) -> None:
    storage = Recorder([httpx.Response(200, content=image_bytes())])
    async with make_client(storage=storage, max_download_bytes=10) as client:
        with pytest.raises(DownloadError, match="10-byte cap"):
            await client.download(URL, tmp_path / "r.jpg")


@pytest.mark.parametrize(
    "body",
    [b"<html>not an image</html>", b"GIF89a" + b"\x00" * 40, b"\xff\xd8\xff" + b"\x00" * 30],
    ids=["html", "gif", "truncated-jpeg"],
)
async def test_non_images_are_refused_and_leave_nothing(tmp_path: Path, body: bytes) -> None:
    storage = Recorder([httpx.Response(200, content=body)])
    dest = tmp_path / "r.jpg"
    async with make_client(storage=storage) as client:
        with pytest.raises(DownloadError):
            await client.download(URL, dest)
    assert files_in(tmp_path) == []


async def test_a_failed_download_keeps_the_previous_file_untouched(tmp_path: Path) -> None:
    dest = tmp_path / "r.jpg"
    dest.write_bytes(b"previous complete picture")
    storage = Recorder([httpx.Response(200, content=b"not an image at all")])
    async with make_client(storage=storage) as client:
        with pytest.raises(DownloadError):
            await client.download(URL, dest)
    assert dest.read_bytes() == b"previous complete picture"
    assert files_in(tmp_path) == ["r.jpg"]


async def test_a_broken_stream_is_retried_from_scratch(tmp_path: Path) -> None:
    data = image_bytes(size=(500, 300))
    storage = Recorder([
        lambda _req: httpx.Response(200, content=chunks(data, fail_after=2)),
        httpx.Response(503),
        lambda _req: httpx.Response(200, content=chunks(data)),
    ])
    sleep = SleepRecorder()
    async with make_client(storage=storage, sleep=sleep) as client:
        got = await client.download(URL, tmp_path / "r.jpg")
        assert client.stats.transport_errors == 1 and client.stats.retries == 2
    assert got.sha256 == hashlib.sha256(data).hexdigest() and got.size == len(data)
    assert len(storage.requests) == 3 and len(sleep.delays) == 2
    assert files_in(tmp_path) == ["r.jpg"]


@pytest.mark.parametrize(("status", "expected"), [(403, Forbidden), (404, NotFound)])
async def test_expired_or_deleted_result_url_is_not_retried(
    tmp_path: Path, status: int, expected: type[Exception]
) -> None:
    storage = Recorder([httpx.Response(status, text="<Error><Code>AccessDenied</Code></Error>")])
    async with make_client(storage=storage) as client:
        with pytest.raises(expected) as info:
            await client.download(URL, tmp_path / "r.jpg")
    assert "X-Amz-Signature" not in str(info.value)
    assert "https://out.test/results/r.jpg" in str(info.value)
    assert len(storage.requests) == 1
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("url", ["", "None", "ftp://out.test/r.jpg"])
async def test_download_without_a_usable_url_fails_at_once(tmp_path: Path, url: str) -> None:
    storage = Recorder()
    async with make_client(storage=storage) as client:
        with pytest.raises(DownloadError, match="no usable result URL"):
            await client.download(url, tmp_path / "r.jpg")
    assert storage.requests == []


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")])
async def test_name_by_format_gives_the_file_the_extension_of_its_bytes(tmp_path: Path, fmt: str, ext: str) -> None:
    data = image_bytes(fmt, size=(40, 30))
    storage = Recorder([httpx.Response(200, content=data, headers={"Content-Type": "image/jpeg"})])
    dest = tmp_path / "mug.jpg"  # the planned name: its extension is a placeholder
    async with make_client(storage=storage) as client:
        got = await client.download(URL, dest, name_by_format=True)
    assert got.path == tmp_path / f"mug{ext}"
    assert got.path.read_bytes() == data
    assert files_in(tmp_path) == [f"mug{ext}"]  # no .part, no file under the planned name unless it is the real one


async def test_name_by_format_keeps_unknown_bytes_as_bin_and_says_so(tmp_path: Path) -> None:
    data = b"\x00\x00\x00\x1cftypavif" + b"\x00" * 200  # an AVIF header: no format Backdrop knows
    storage = Recorder([httpx.Response(200, content=data)])
    async with make_client(storage=storage) as client:
        with pytest.raises(DownloadError, match=r"not a JPEG, PNG or WebP image .*kept as mug\.bin"):
            await client.download(URL, tmp_path / "mug.jpg", name_by_format=True)
    assert files_in(tmp_path) == ["mug.bin"]
    assert (tmp_path / "mug.bin").read_bytes() == data


async def test_without_name_by_format_unknown_bytes_are_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    storage = Recorder([httpx.Response(200, content=b"GIF89a" + b"\x00" * 100)])
    async with make_client(storage=storage) as client:
        with pytest.raises(DownloadError, match="not a JPEG, PNG or WebP image"):
            await client.download(URL, tmp_path / "mug.jpg")
    assert files_in(tmp_path) == []
