"""Preflight: fetch an input picture and check it against the API's limits before anything is paid.

Everything here is free and local. A picture that passes is staged under its content hash, so every later
step (upload, cache keys, the ledger) is keyed on the bytes, never on a file name.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
from PIL import Image

from backdrop.errors import BackdropError

__all__ = ["InputRejected", "PreparedInput", "MAX_BYTES", "MAX_SIDE", "prepare_input", "stage_bytes"]

MAX_BYTES = 10 * 1024 * 1024  # the vendor's limit: file < 10 MB
MAX_SIDE = 4096  # longer side <= 4096 px
SUPPORTED = {"JPEG": "image/jpeg", "PNG": "image/png"}
#: how much we are willing to fetch at all (fit_inputs may shrink a bigger picture)
FETCH_CAP = 64 * 1024 * 1024
#: Pillow's decompression-bomb guard, made explicit: refuse more pixels than a 2x-oversized 8k picture
MAX_PIXELS = 8192 * 8192


class InputRejected(BackdropError):
    """The input picture cannot be sent; `code` says why. Nothing was paid."""

    code = "input_rejected"

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status, error_code=code)


@dataclass(frozen=True)
class PreparedInput:
    """A checked picture, staged on disk under its content hash. Small: safe as a Prefect result."""

    sha256: str
    path: str
    content_type: str
    size: int
    width: int
    height: int
    note: str | None = None


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
        raise InputRejected("input_not_found", f"no such file next to the CSV: {source}")
    return candidate


async def _fetch(url: str, http: httpx.AsyncClient) -> bytes:
    try:
        async with http.stream("GET", url) as resp:
            if resp.status_code >= 400:
                raise InputRejected(
                    "input_http_error", f"fetching the image gave HTTP {resp.status_code}",
                    status=resp.status_code,
                )
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > FETCH_CAP:
                raise InputRejected("exceed_max_filesize", f"image is {int(declared)} bytes")
            chunks, total = [], 0
            async for chunk in resp.aiter_bytes():
                total += len(chunk)
                if total > FETCH_CAP:
                    raise InputRejected("exceed_max_filesize", f"image is over {FETCH_CAP} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.UnsupportedProtocol as exc:
        raise InputRejected("input_scheme_refused", f"redirected to a non-http URL: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise InputRejected("input_unreachable", "too many redirects") from exc
    except httpx.TransportError as exc:
        raise InputRejected("input_unreachable", f"cannot fetch the image: {type(exc).__name__}") from exc


async def read_source(source: str, base_dir: Path | None, http: httpx.AsyncClient) -> bytes:
    """The raw bytes behind a CSV cell: an http(s) URL, or a path inside the CSV's folder."""
    if not source:
        raise InputRejected("input_missing", "image_url is empty")
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        return await _fetch(source, http)
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, anything else a refused scheme
        raise InputRejected("input_scheme_refused", f"'{scheme}:' inputs are not accepted")
    path = _local_path(source, base_dir)
    size = path.stat().st_size
    if size > FETCH_CAP:
        raise InputRejected("exceed_max_filesize", f"image is {size} bytes")
    return await asyncio.to_thread(path.read_bytes)


def _check(data: bytes, fit_inputs: bool) -> tuple[bytes, str, int, int, str | None]:
    """Decode, check and (with fit_inputs) repair. Returns (bytes, content_type, w, h, note)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt, (w, h) = probe.format, probe.size
            if w * h > MAX_PIXELS:
                raise InputRejected(
                    "decompression_bomb", f"{w}x{h} is more pixels than Backdrop will decode"
                )
            probe.load()  # a truncated file fails here, not later
            img = probe.copy()
    except InputRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise InputRejected("decompression_bomb", str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        msg = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the data", str(exc))  # reproducible
        code = "input_truncated" if "truncated" in msg.lower() else "error_decode_image"
        raise InputRejected(code, f"not a readable image: {msg[:200]}") from exc

    notes: list[str] = []
    ctype = SUPPORTED.get(fmt or "")
    if ctype is None:
        if not fit_inputs:
            raise InputRejected(
                "unsupported_format", f"{fmt} is not accepted (jpg/png only); fit_inputs converts it"
            )
    if max(w, h) > MAX_SIDE and not fit_inputs:
        raise InputRejected(
            "error_exceed_max_image_size", f"{w}x{h} is over {MAX_SIDE} px; fit_inputs downscales it"
        )
    if len(data) >= MAX_BYTES and not fit_inputs:
        raise InputRejected("exceed_max_filesize", f"{len(data)} bytes is over the 10 MB limit")
    if ctype is not None and max(w, h) <= MAX_SIDE and len(data) < MAX_BYTES:
        return data, ctype, w, h, None

    # fit_inputs: downscale, and re-encode to PNG (alpha) or JPEG.
    if max(w, h) > MAX_SIDE:
        scale = MAX_SIDE / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
        notes.append(f"downscaled {w}x{h} to {img.width}x{img.height}")
    has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
    out = io.BytesIO()
    if has_alpha:
        img.convert("RGBA").save(out, "PNG", optimize=True)
        ctype, target = "image/png", "PNG"
    if not has_alpha or out.tell() >= MAX_BYTES:
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=90)
        ctype, target = "image/jpeg", "JPEG"
    if fmt != target:
        notes.append(f"re-encoded {fmt} as {target}")
    fitted = out.getvalue()
    if len(fitted) >= MAX_BYTES:
        raise InputRejected("exceed_max_filesize", "still over 10 MB after re-encoding")
    return fitted, ctype, img.width, img.height, "; ".join(notes) or None


def stage_bytes(data: bytes, staging_dir: Path, ext: str) -> tuple[str, Path]:
    """Write `data` under its sha256 in `staging_dir` atomically; return (sha256, path)."""
    digest = hashlib.sha256(data).hexdigest()
    dest = staging_dir / f"{digest}{ext}"
    if not dest.exists():
        staging_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=staging_dir, prefix=".stage-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    return digest, dest


def _unexpected(code: str, what: str, source: str, exc: Exception) -> InputRejected:
    """An unforeseen error on one cell, as that row's rejection. The message names the error's type (and errno),
    never its text (which may quote the whole cell, a path or a URL), and at most a few scrubbed characters of
    the cell."""
    kind = type(exc).__name__
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        kind += f" {errno.errorcode[exc.errno]}"
    preview = re.sub(r"[^A-Za-z0-9._/:-]", "?", source[:12]) + ("..." if len(source) > 12 else "")
    return InputRejected(code, f"{what} ({kind}): '{preview}'")


async def prepare_input(
    source: str,
    *,
    base_dir: Path | None,
    staging_dir: Path,
    fit_inputs: bool = False,
    http: httpx.AsyncClient | None = None,
) -> PreparedInput:
    """Fetch, check and stage one input picture. Raises InputRejected with a code on any problem."""
    own = http is None
    http = http or httpx.AsyncClient(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0))
    try:
        data = await read_source(source, base_dir, http)
    except InputRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a cell holds, the row is the failure boundary
        raise _unexpected("input_unreadable", "cannot read this input", source, exc) from exc
    finally:
        if own:
            await http.aclose()
    try:
        data, ctype, w, h, note = await asyncio.to_thread(_check, data, fit_inputs)
        ext = ".png" if ctype == "image/png" else ".jpg"
        digest, path = await asyncio.to_thread(stage_bytes, data, staging_dir, ext)
    except InputRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - a picture Pillow chokes on, a staging disk that fails: this row
        raise _unexpected("preflight_error", "cannot check or stage this input", source, exc) from exc
    return PreparedInput(
        sha256=digest, path=str(path), content_type=ctype, size=len(data), width=w, height=h, note=note
    )
