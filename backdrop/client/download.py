"""Stream a result picture to disk atomically, capped, hashed, sniffed and measured.

The bytes go to `<dest>.part`, are fsynced, checked to be a JPEG/PNG/WebP that Pillow can read,
and only then renamed onto `dest`. Any failure removes the partial file, so `dest` is either
absent or a complete picture.

With `name_by_format`, the file takes the extension of its bytes (`EXTENSIONS`: `.jpg`, `.png`, `.webp`)
in place of `dest`'s: the vendor publishes no output format, so the name follows what came. Bytes that are
none of the three are kept (they were paid for) as `.bin` beside it, and DownloadError says where.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from PIL import Image, UnidentifiedImageError

from backdrop.client._errors import error_from_response, safe_url
from backdrop.client._http import USER_AGENT
from backdrop.client.models import DownloadedFile, ImageFormat
from backdrop.errors import DownloadError
from backdrop.fences import FetchRefused, origin_of

_HEAD = 16
MAX_REDIRECTS = 5
#: the file extension of each result format (`name_by_format`)
EXTENSIONS: dict[ImageFormat, str] = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
#: the extension of kept bytes that are no picture Backdrop knows
UNKNOWN_EXTENSION = ".bin"


def check_result_url(url: str | httpx.URL, api_url: str | None) -> None:
    """A result (or a redirect on its way) is fetched only over https, or from the configured API's own
    origin (the sandbox serves its results itself, over http on loopback). DownloadError otherwise."""
    if not str(url).startswith(("http://", "https://")):
        raise DownloadError("no usable result URL (expected http:// or https://)")
    where = origin_of(url)
    if where[0] == "https" or (api_url and where == origin_of(api_url)):
        return
    raise DownloadError(f"result URL refused: http to {where[1]}, which is not the API's host ({safe_url(str(url))})")


@contextlib.asynccontextmanager
async def _get(http: httpx.AsyncClient, url: str, headers: dict[str, str],
               api_url: str | None) -> AsyncIterator[httpx.Response]:
    """GET with redirects followed by hand, so that every hop's URL is checked before it is requested
    (the client's transport checks every hop's address)."""
    for _ in range(MAX_REDIRECTS + 1):
        check_result_url(url, api_url)
        try:
            resp = await http.send(http.build_request("GET", url, headers=headers), stream=True,
                                   follow_redirects=False)
        except FetchRefused as exc:
            raise DownloadError(f"result URL refused: {exc} ({safe_url(url)})") from exc
        if resp.next_request is not None:
            url = str(resp.next_request.url)
            await resp.aclose()
            continue
        try:
            yield resp
        finally:
            await resp.aclose()
        return
    raise DownloadError(f"result URL redirected more than {MAX_REDIRECTS} times ({safe_url(url)})")


def sniff_format(head: bytes) -> ImageFormat | None:
    """The image format from its magic bytes (servers may say `binary/octet-stream`)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def part_path(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part")


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:  # reads the header only
        return img.size


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable on POSIX; not possible (nor needed) everywhere.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _keep_unknown(part: Path, dest: Path, size: int, where: str) -> DownloadError:
    """Keep bytes of an unknown format as `<stem>.bin` (paid for: a person may want them); the error says so."""
    kept = dest.with_suffix(UNKNOWN_EXTENSION)
    os.replace(part, kept)
    return DownloadError(f"result is not a JPEG, PNG or WebP image ({size} bytes, {where}); its bytes are kept "
                         f"as {kept.name}")


async def download_once(
    http: httpx.AsyncClient, url: str, dest: Path, *, max_bytes: int, api_url: str | None = None,
    name_by_format: bool = False,
) -> DownloadedFile:
    """One attempt. Raises ApiError subclasses for error statuses (403 → Forbidden),
    DownloadError for a too-big or non-image body or a refused URL (http to a host that is not `api_url`'s),
    httpx transport errors as they come. `name_by_format`: the file's extension is its format's, not `dest`'s
    (`DownloadedFile.path` says where it went)."""
    check_result_url(url, api_url)
    where = safe_url(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    digest = hashlib.sha256()
    size = 0
    head = b""
    done = False
    try:
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        async with _get(http, url, headers, api_url) as resp:
            if not resp.is_success:
                await resp.aread()
                raise error_from_response(resp, with_url=True)
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(
                    f"result is {int(declared)} bytes, over the {max_bytes}-byte cap ({where})",
                    status=resp.status_code,
                    request_id=resp.headers.get("x-request-id"),
                )
            with open(part, "wb") as fh:  # noqa: ASYNC230 - a local write per chunk as the network delivers it
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(
                            f"result passed the {max_bytes}-byte cap while streaming ({where})",
                            status=resp.status_code,
                            request_id=resp.headers.get("x-request-id"),
                        )
                    if len(head) < _HEAD:
                        head += chunk[: _HEAD - len(head)]
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
        fmt = sniff_format(head)
        if fmt is None and name_by_format:
            raise _keep_unknown(part, dest, size, where)
        if fmt is None:
            raise DownloadError(f"result is not a JPEG, PNG or WebP image ({size} bytes, {where})")
        try:
            width, height = await asyncio.to_thread(_image_size, part)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DownloadError(f"result {fmt} image is unreadable: {exc} ({where})") from exc
        if name_by_format:
            dest = dest.with_suffix(EXTENSIONS[fmt])
        os.replace(part, dest)
        done = True
        _fsync_dir(dest.parent)
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
    return DownloadedFile(
        path=dest, sha256=digest.hexdigest(), size=size, format=fmt, width=width, height=height
    )
