"""The fake AI engine: read the source picture, check it as the vendor does, compose, charge."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from typing import Literal

import httpx
from PIL import Image

from . import imaging
from .netguard import Blocked, check_target
from .state import KeyState, Task

log = logging.getLogger("backdrop.sandbox")

MAX_BYTES = 10 * 1024 * 1024
MAX_SIDE = 4096
MAX_REDIRECTS = 5
#: result_size="scaled": results at this fraction of the input's pixel size
RESULT_SCALE = 0.75
#: result_format -> (Pillow encoder, file extension)
RESULT_ENCODINGS: dict[str, tuple[Literal["JPEG", "PNG", "WEBP"], str]] = {
    "jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png"), "webp": ("WEBP", ".webp")}

_MESSAGES = {
    "exceed_max_filesize": "The input file size exceeds the maximum allowed limit.",
    "error_exceed_max_image_size": "Input image size exceeds the maximum limit",
    "error_decode_image": "Decode source image error",
    "error_download_image": "Download source image error",
    "error_inference": "Inference pipeline error",
    "unknown_internal_error": "Others",
}


class EngineFailure(Exception):
    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail or _MESSAGES.get(code, code)


@dataclass(frozen=True)
class Finished:
    """A task that this call moved to a terminal state (for the webhooks)."""

    key: str
    task_id: str
    status: str
    at: int


def _fetch(url: str, timeout_s: float, *, allow_private: bool = False) -> bytes:
    """GET a src_file_url: public addresses only (unless allowed), each redirect checked the same way."""
    if not url.lower().startswith(("http://", "https://")):
        raise EngineFailure("error_download_image", "src_file_url must be http or https")
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                try:
                    check_target(url, allow_private=allow_private)
                except Blocked as exc:
                    raise EngineFailure("error_download_image", f"src_file_url refused: {exc}") from None
                with client.stream("GET", url) as resp:
                    if resp.is_redirect:
                        url = str(resp.url.join(resp.headers["location"]))
                        continue
                    if resp.status_code // 100 != 2:
                        raise EngineFailure("error_download_image", f"HTTP {resp.status_code}")
                    buf = bytearray()
                    for chunk in resp.iter_bytes():
                        buf += chunk
                        if len(buf) > MAX_BYTES:
                            raise EngineFailure("exceed_max_filesize")
                    return bytes(buf)
    except httpx.HTTPError as exc:
        raise EngineFailure("error_download_image", type(exc).__name__) from exc
    raise EngineFailure("error_download_image", "too many redirects")


def _source(st: KeyState, task: Task) -> bytes:
    if task.src_file_url is not None:
        return _fetch(task.src_file_url, st.config.src_url_timeout_s, allow_private=st.config.allow_private_fetch)
    with st.lock:
        stored = st.files.get(task.src_file_id or "")
    if stored is None or not stored.uploaded:
        raise EngineFailure("unknown_internal_error", "source file is gone")
    return stored.path.read_bytes()


def check_image(data: bytes) -> None:
    """The vendor's input rules: < 10 MB, jpg/png, longer side <= 4096."""
    if len(data) > MAX_BYTES:
        raise EngineFailure("exceed_max_filesize")
    if not (data.startswith(b"\xff\xd8\xff") or data.startswith(b"\x89PNG\r\n\x1a\n")):
        raise EngineFailure("error_decode_image", "not a JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception as exc:  # any decoder failure is the vendor's decode error
        raise EngineFailure("error_decode_image", str(exc)) from exc
    if max(width, height) > MAX_SIDE:
        raise EngineFailure("error_exceed_max_image_size", f"{width}x{height} exceeds {MAX_SIDE}")


def _run(st: KeyState, task: Task) -> None:
    if task.scripted_error:
        raise EngineFailure(task.scripted_error, "scripted by a [[sandbox:error=...]] marker")
    data = _source(st, task)
    check_image(data)
    if task.engine_fault:
        raise EngineFailure("error_inference", "injected by fault_engine_error_rate")
    cfg = st.config
    fmt, ext = RESULT_ENCODINGS[cfg.result_format]
    scale = RESULT_SCALE if cfg.result_size == "scaled" else 1.0
    try:
        out = imaging.compose(data, prompt=task.prompt, template_id=task.template_id,
                              scale=scale, fmt=fmt)
    except imaging.ImageDecodeError as exc:
        raise EngineFailure("error_decode_image", str(exc)) from exc
    path = st.root / f"{task.task_id}{ext}"
    path.write_bytes(out)
    task.result_path = path


def process(st: KeyState, task: Task) -> Finished | None:
    """Finish `task` now; None if another thread already did (or it was reset away)."""
    with task.lock:
        if task.status != "running":
            return None
        try:
            _run(st, task)
        except EngineFailure as fail:
            task.status, task.error, task.error_message = "error", fail.code, fail.detail
        except Exception as exc:  # a sandbox bug must end the task, not hang it
            log.exception("sandbox engine crashed on task %s", task.task_id)
            task.status, task.error = "error", "unknown_internal_error"
            task.error_message = f"sandbox engine crashed: {type(exc).__name__}"
        else:
            if st.charge(task, st.config.units_per_task):
                task.status = "success"
            else:
                # Decided here, not documented by the vendor: never let the balance go negative.
                task.status, task.error = "error", "unknown_internal_error"
                task.error_message = "insufficient units at completion"
                if task.result_path:
                    task.result_path.unlink(missing_ok=True)
        task.finished = time.time()
        return Finished(task.key, task.task_id, task.status, int(task.finished))
