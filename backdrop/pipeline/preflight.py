"""Preflight: fetch an input picture (`backdrop.pipeline.sources`) and check it against the API's limits before
anything is paid.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from PIL import Image, UnidentifiedImageError

from backdrop.errors import InputRejected
from backdrop.fences import fenced_transport, fetch_limits
from backdrop.pipeline.sources import is_fetched, read_source

__all__ = ["PreparedInput", "MAX_BYTES", "MAX_SIDE", "fetch_client", "prepare_input", "stage_bytes"]

MAX_BYTES = 10 * 1024 * 1024  # the vendor's limit: file < 10 MB
MAX_SIDE = 4096  # longer side <= 4096 px
SUPPORTED = {"JPEG": "image/jpeg", "PNG": "image/png"}
#: what fit_inputs converts to JPEG/PNG. Pillow is never offered any other format (no EPS, so no Ghostscript).
FIT_FORMATS = ("WEBP", "GIF", "BMP", "TIFF")
#: the most pixels Backdrop decodes, read from the header first: a 32 MP photo (6000x4000 fits), well
#: below Pillow's own guard (89 M). At most 128 MB as RGBA; a JPEG is decoded reduced (draft) anyway.
MAX_PIXELS = 32 * 1024 * 1024


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


#: magic bytes of FIT_FORMATS, read without any loader: such a file says `unsupported_format` without fit_inputs
_FIT_MAGIC = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"),
              (b"II+\0", "TIFF"), (b"MM\0+", "TIFF"), (b"BM", "BMP"))


def _fit_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _FIT_MAGIC if data.startswith(magic)), None)


#: pixels: a bigger decode runs on one thread of its own, one at a time. Its memory then comes from one malloc
#: arena, reused picture after picture, instead of staying behind in each worker thread's (8 fitted 25 MP PNGs
#: reach 1.2 GB of RSS the other way, 0.3 GB this way).
_BIG_DECODE = 4 * 1024 * 1024
_BIG_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backdrop-decode")
_T = TypeVar("_T")


def _decoding(pixels: int, work: Callable[[], _T]) -> _T:
    return work() if pixels <= _BIG_DECODE else _BIG_DECODER.submit(work).result()


def _draft(img: Image.Image, size: tuple[int, int]) -> int:
    """Decode no bigger than needed for `size` (a JPEG at 1/2..1/8 scale; others in full): the pixels it will take."""
    img.draft(None, (max(1, size[0]), max(1, size[1])))  # JPEG only; a no-op for the others
    return img.width * img.height


def _unreadable(exc: Exception) -> InputRejected:
    msg = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the data", str(exc))  # reproducible
    code = "input_truncated" if "truncated" in msg.lower() else "error_decode_image"
    return InputRejected(code, f"not a readable image: {msg[:200]}")


def _check(data: bytes, fit_inputs: bool) -> tuple[bytes, str, int, int, str | None]:
    """Check (header first), decode (reduced where possible) and, with fit_inputs, repair.

    Returns (bytes, content_type, w, h, note). Only the formats the API or fit_inputs accept reach a loader,
    and nothing is decoded before the header's size passed MAX_PIXELS and (without fit_inputs) MAX_SIDE.
    """
    formats = (*SUPPORTED, *FIT_FORMATS) if fit_inputs else tuple(SUPPORTED)
    try:
        probe = Image.open(io.BytesIO(data), formats=formats)  # reads the header only
    except Image.DecompressionBombError as exc:
        raise InputRejected("decompression_bomb", str(exc)) from exc
    except UnidentifiedImageError as exc:
        other = _fit_format(data)
        if other and not fit_inputs:
            raise InputRejected(
                "unsupported_format", f"{other} is not accepted (jpg/png only); fit_inputs converts it"
            ) from exc
        accepted = "JPEG, PNG, " + ", ".join(FIT_FORMATS) if fit_inputs else "JPEG or PNG"
        raise InputRejected("error_decode_image", f"not a readable image: not a {accepted} file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise _unreadable(exc) from exc
    with probe:
        fmt, (w, h) = probe.format, probe.size
        if w * h > MAX_PIXELS:
            raise InputRejected("decompression_bomb", f"{w}x{h} is more pixels than Backdrop will decode")
        ctype = SUPPORTED.get(fmt or "")
        if ctype is None and not fit_inputs:
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
            try:  # sent as it is: only prove that it decodes (a JPEG at 1/8 scale walks all its data)
                _decoding(_draft(probe, (w // 8, h // 8)), probe.load)  # a truncated file fails here
            except (OSError, SyntaxError, ValueError) as exc:
                raise _unreadable(exc) from exc
            return data, ctype, w, h, None
        return _fit(probe, fmt or "?")


def _fit(img: Image.Image, fmt: str) -> tuple[bytes, str, int, int, str | None]:
    """fit_inputs: downscale to MAX_SIDE, and re-encode to PNG (alpha) or JPEG."""
    w, h = img.size
    target = (w, h)
    if max(w, h) > MAX_SIDE:
        scale = MAX_SIDE / max(w, h)
        target = (max(1, round(w * scale)), max(1, round(h * scale)))

    def work() -> tuple[bytes, str, int, int, str | None]:
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise _unreadable(exc) from exc
        return _encode(img, fmt, (w, h), target)

    return _decoding(_draft(img, target), work)


def _encode(img: Image.Image, fmt: str, size: tuple[int, int], target: tuple[int, int]) -> tuple[
    bytes, str, int, int, str | None
]:
    notes: list[str] = []
    w, h = size
    if img.size != target:
        img = img.resize(target, Image.Resampling.LANCZOS)
    if target != (w, h):
        notes.append(f"downscaled {w}x{h} to {img.width}x{img.height}")
    has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
    out = io.BytesIO()
    if has_alpha:
        img.convert("RGBA").save(out, "PNG", optimize=True)
        ctype, target_fmt = "image/png", "PNG"
    if not has_alpha or out.tell() >= MAX_BYTES:
        out = io.BytesIO()
        (img if img.mode == "RGB" else img.convert("RGB")).save(out, "JPEG", quality=90)
        ctype, target_fmt = "image/jpeg", "JPEG"
    if fmt != target_fmt:
        notes.append(f"re-encoded {fmt} as {target_fmt}")
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
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        kind += f" {errno.errorcode[exc.errno]}"
    preview = re.sub(r"[^A-Za-z0-9._/:-]", "?", source[:12]) + ("..." if len(source) > 12 else "")
    return InputRejected(code, f"{what} ({kind}): '{preview}'")


def fetch_client() -> httpx.AsyncClient:
    """The client input pictures are fetched with: fenced, every connection and each redirect hop too
    (backdrop/fences.py), within the fetch limits of the environment. One per run is enough (`prepare_input`)."""
    return httpx.AsyncClient(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0), trust_env=False,
                             transport=fenced_transport(fetch_limits().fence))


async def prepare_input(
    source: str,
    *,
    base_dir: Path | None,
    staging_dir: Path,
    fit_inputs: bool = False,
    http: httpx.AsyncClient | None = None,
) -> PreparedInput:
    """Fetch, check and stage one input picture. Raises InputRejected with a code on any problem.

    `http` is the run's `fetch_client()`; without one, a URL gets a client of its own (a file needs none: a
    client costs an SSL context, some 20 ms of CPU)."""
    own = http is None and is_fetched(source)
    if own:
        http = fetch_client()
    try:
        data = await read_source(source, base_dir, http)
    except InputRejected:
        raise
    except Exception as exc:  # whatever a cell holds, the row is the failure boundary
        raise _unexpected("input_unreadable", "cannot read this input", source, exc) from exc
    finally:
        if own and http is not None:
            await http.aclose()
    try:
        data, ctype, w, h, note = await asyncio.to_thread(_check, data, fit_inputs)
        ext = ".png" if ctype == "image/png" else ".jpg"
        digest, path = await asyncio.to_thread(stage_bytes, data, staging_dir, ext)
    except InputRejected:
        raise
    except Exception as exc:  # a picture Pillow chokes on, a staging disk that fails: this row
        raise _unexpected("preflight_error", "cannot check or stage this input", source, exc) from exc
    return PreparedInput(
        sha256=digest, path=str(path), content_type=ctype, size=len(data), width=w, height=h, note=note
    )
