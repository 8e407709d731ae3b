"""The raw bytes behind a CSV cell, before any check: a fetch of an http(s) URL within the fetch limits and the
address fence, or a file inside the CSV's folder. Every refusal is an InputRejected with its code."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import httpx

from backdrop.errors import InputRejected
from backdrop.fences import FetchRefused, fetch_limits

__all__ = ["FETCH_CAP", "is_fetched", "read_source"]

#: how much we are willing to fetch at all (fit_inputs may shrink a bigger picture)
FETCH_CAP = 64 * 1024 * 1024


def _local_path(source: str, base_dir: Path | None) -> Path:
    if base_dir is None:
        raise InputRejected(
            "input_path_refused", "a local path needs a local CSV (paths are relative to its folder)"
        )
    candidate = (base_dir / source).resolve()
    if not candidate.is_relative_to(base_dir):
        raise InputRejected(
            "input_path_refused", "path is outside the CSV's folder; Backdrop only reads files there"
        )
    if not candidate.is_file():
        raise InputRejected("input_not_found", f"no such file next to the CSV: {source[:100]!r}")
    return candidate


async def _fetch(url: str, http: httpx.AsyncClient) -> bytes:
    """GET `url` within the fetch limits: BACKDROP_FETCH_DEADLINE_SECONDS for the whole fetch (redirects and body),
    BACKDROP_FETCH_MAX_BYTES, and (with prepare_input's own client) the address fence on every hop."""
    limits = fetch_limits()
    cap = limits.max_bytes
    try:
        async with asyncio.timeout(limits.deadline_seconds), http.stream("GET", url) as resp:
            if resp.status_code >= 400:
                raise InputRejected(
                    "input_http_error", f"fetching the image gave HTTP {resp.status_code}",
                    status=resp.status_code,
                )
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise InputRejected("exceed_max_filesize", f"image is {int(declared)} bytes, over {cap}")
            chunks, total = [], 0
            async for chunk in resp.aiter_bytes():
                total += len(chunk)
                if total > cap:
                    raise InputRejected("exceed_max_filesize", f"image is over {cap} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except TimeoutError as exc:  # asyncio.timeout's: httpx's own timeouts are TransportErrors
        raise InputRejected(
            "input_timeout", f"fetching the image took over {limits.deadline_seconds:g} s"
        ) from exc
    except FetchRefused as exc:
        raise InputRejected("input_address_refused", f"not fetched: {exc}") from exc
    except httpx.UnsupportedProtocol as exc:
        raise InputRejected("input_scheme_refused", f"redirected to a non-http URL: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise InputRejected("input_unreachable", "too many redirects") from exc
    except httpx.TransportError as exc:
        raise InputRejected("input_unreachable", f"cannot fetch the image: {type(exc).__name__}") from exc


def is_fetched(source: str) -> bool:
    """True for a cell that is fetched over HTTP (an http(s) URL), False for anything else (a file, a refusal, a
    cell that is no URL at all: `read_source` says why)."""
    try:
        return urlparse(source).scheme.lower() in ("http", "https")
    except ValueError:  # "Invalid IPv6 URL" and the like
        return False


async def read_source(source: str, base_dir: Path | None, http: httpx.AsyncClient | None) -> bytes:
    """The raw bytes behind a CSV cell: an http(s) URL (fetched with `http`, required then), or a path inside the
    CSV's folder."""
    if not source:
        raise InputRejected("input_missing", "image_url is empty")
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        if http is None:
            raise ValueError("an http(s) source needs a client")
        return await _fetch(source, http)
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, anything else a refused scheme
        raise InputRejected("input_scheme_refused", f"'{scheme}:' inputs are not accepted")
    path = _local_path(source, base_dir)
    size = path.stat().st_size
    if size > FETCH_CAP:
        raise InputRejected("exceed_max_filesize", f"image is {size} bytes")
    return await asyncio.to_thread(path.read_bytes)
