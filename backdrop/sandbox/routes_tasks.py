"""Task API: create, poll, delete, the template list, and the signed result download."""

from __future__ import annotations

import math
import time
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from . import engine, ids, imaging, markers, responses
from ._common import (
    Reject,
    base_url,
    check_slug,
    json_object,
    key_state,
    missing,
    registry,
    wrong_type,
)
from .gate import DROP, KEY, LOSE_IF_CREATED
from .pages import encode_token, page_params
from .settings import SandboxSettings
from .state import KeyState, Task

router = APIRouter()

_TASK_FIELDS = frozenset({"src_file_id", "src_file_url", "type", "prompt", "template_id"})
_DEFAULT_TEMPLATE = "nature_cherryblossom"


def _draw_duration(st: KeyState, scripted: float | None) -> float:
    """Vendor seconds this task runs: a scripted value, or a draw fixed by (seed, task order)."""
    cfg = st.config
    if scripted is not None:
        return scripted
    if cfg.duration_mode == "immediate":
        return 0.0
    if cfg.duration_mode == "fixed":
        return cfg.duration_median_s
    return st.rng("duration").lognormvariate(0.0, cfg.duration_sigma) * cfg.duration_median_s


def _validate(body: dict[str, Any]) -> dict[str, Any]:
    extra = sorted(set(body) - _TASK_FIELDS)
    if extra:
        raise Reject(responses.error(400, f"Unexpected parameter: {', '.join(extra)}",
                                     "BadRequest"))
    for name in _TASK_FIELDS:
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise wrong_type(body[name], "string", name)
    has_id, has_url = bool(body.get("src_file_id")), bool(body.get("src_file_url"))
    if not has_id and not has_url:
        raise missing("src_file_id")  # the wording of the first anyOf branch
    if has_id and has_url:
        raise Reject(responses.invalid("Give exactly one of src_file_id and src_file_url"))
    kind = body.get("type") or "prompt"
    if kind not in ("prompt", "template"):
        raise Reject(responses.invalid(
            f'type: instance value ("{kind}") not found in enum (possible values: '
            '["prompt","template"])'))
    template_id = body.get("template_id")
    templates = {t["id"] for t in imaging.TEMPLATES}
    if kind == "template":
        if template_id is None:
            default = _DEFAULT_TEMPLATE in templates
            template_id = _DEFAULT_TEMPLATE if default else imaging.TEMPLATES[0]["id"]
        elif template_id not in templates:
            raise Reject(responses.invalid(f"Invalid template_id: {template_id}"))
    else:
        template_id = None  # the vendor ignores template_id in prompt mode
    return {**body, "type": kind, "template_id": template_id}


async def _settle(request: Request, st: KeyState, task: Task) -> None:
    """Finish a due task now, so a poll after its due time always sees the outcome."""
    if task.status == "running" and time.monotonic() >= task.due:
        done = await anyio.to_thread.run_sync(engine.process, st, task)
        if done is not None:
            request.app.state.deliverer.notify(st, done)


@router.post("/s2s/v2.0/task/delete")
async def delete_task(request: Request) -> Response:
    body = await json_object(request)
    if not body.get("task_id"):
        raise missing("task_id")
    reg, st = registry(request), key_state(request)
    task = st.live_task(str(body["task_id"]))
    if task is None:
        return responses.json_body(responses.INVALID_TASK_ID)
    await _settle(request, st, task)
    if task.status == "running":
        return responses.error(400, "The task has not finished yet", "OperationInvalid")
    task.deleted = True  # no refund: the vendor keeps the units
    with reg.lock:
        reg.result_tokens.pop(task.result_token, None)
    if task.result_path:
        task.result_path.unlink(missing_ok=True)
    with st.lock:
        stored = st.files.pop(task.src_file_id or "", None)
    if stored:
        stored.path.unlink(missing_ok=True)
    return responses.json_body({"status": 200})


@router.get("/s2s/v2.0/task/template/{slug}")
async def list_templates(slug: str, request: Request) -> Response:
    check_slug(slug)
    start, size = page_params(request, max_size=20)
    rows = imaging.TEMPLATES[start:start + size]
    base = base_url(request)
    templates = [{"id": t["id"], "thumb": f"{base}/_sandbox/templates/{t['id']}.jpg",
                  "title": t["title"], "category_name": t["category_name"]} for t in rows]
    nxt = start + size
    return responses.ok({"templates": templates,
                         "next_token": encode_token(nxt) if nxt < len(imaging.TEMPLATES) else None})


@router.post("/s2s/v2.0/task/{slug}")
async def create_task(slug: str, request: Request) -> Response:
    check_slug(slug)
    body = _validate(await json_object(request))
    reg, st = registry(request), key_state(request)
    cfg = st.config
    stored = None
    if body.get("src_file_id"):
        with st.lock:
            stored = st.files.get(body["src_file_id"])
    script = markers.parse(body.get("prompt"), stored.file_name if stored else None,
                           body.get("src_file_url"))
    if script.http is not None:
        return responses.for_status(script.http)
    if st.balance < cfg.units_per_task:
        return responses.error(400, "Insufficient units to run the task", "CreditInsufficiency")
    if body.get("src_file_id") and (stored is None or not stored.uploaded):
        # Contract 3.2: a file never PUT (or unknown) fails with 500 unknown_internal_error;
        # the sandbox answers it at create time and creates no task.
        return responses.json_body(responses.INTERNAL)
    now = time.monotonic()
    duration = _draw_duration(st, script.duration_s)
    fault = ("create" in cfg.fault_routes and cfg.fault_engine_error_rate > 0
             and st.rng("engine").random() < cfg.fault_engine_error_rate)
    lost = script.lost or bool(request.scope.get(LOSE_IF_CREATED))
    task = Task(
        task_id=ids.task_id(), key=st.key, slug=slug,
        src_file_id=body.get("src_file_id") or None,
        src_file_url=body.get("src_file_url") or None,
        file_name=stored.file_name if stored else None,
        prompt=markers.strip(body.get("prompt")),
        template_id=body["template_id"], kind=body["type"],
        scripted_error=script.error, engine_fault=fault, lost=lost, created=time.time(),
        due=now + cfg.real(duration), last_touch=now, duration_s=duration,
    )
    if cfg.task_timeout_s is not None and duration > cfg.task_timeout_s:  # it never finishes: no result, no charge
        task.due, task.times_out_at = math.inf, now + cfg.real(cfg.task_timeout_s)
    with st.lock:
        st.tasks[task.task_id] = task
    with reg.lock:
        reg.result_tokens[task.result_token] = (st.key, task.task_id)
    reg.schedule(task)
    if task.due <= now:
        await _settle(request, st, task)
    if lost:
        request.scope[DROP] = True
    return responses.ok(_with_interval(cfg, {"task_id": task.task_id}))


def _with_interval(cfg: SandboxSettings, data: dict[str, Any]) -> dict[str, Any]:
    """`data` plus `polling_interval` when the key's config sends one."""
    return data if cfg.polling_interval_s is None else {**data, "polling_interval": cfg.polling_interval_s}


def _timed_out(task: Task) -> bool:
    """The task ran past the key's `task_timeout_s` (it never finishes, and is never charged) and that moment has
    come: its polls answer TaskTimeout."""
    return task.times_out_at is not None and time.monotonic() >= task.times_out_at


@router.get("/s2s/v2.0/task/{slug}/{task_id}")
async def poll_task(slug: str, task_id: str, request: Request) -> Response:
    check_slug(slug)
    reg, st = registry(request), key_state(request)
    task = st.live_task(task_id)
    if task is None or (task.slug != slug and st.config.poll_slug_check == "strict"):
        return responses.json_body(responses.INVALID_TASK_ID)  # the other slug knows no such task
    task.polls += 1
    task.last_touch = time.monotonic()
    if _timed_out(task):
        return responses.json_body(responses.TASK_TIMEOUT)
    await _settle(request, st, task)
    cfg = st.config
    if task.status == "running":
        return responses.ok(_with_interval(cfg, {"error": None, "results": None, "task_status": "running"}))
    if task.status == "error":
        return responses.ok(_with_interval(cfg, {"task_status": "error", "error": task.error,
                                                 "error_message": task.error_message, "results": None}))
    ext = task.result_path.suffix if task.result_path else ".jpg"  # .png/.webp with result_format png/webp
    path = f"/_storage/result/{task.result_token}{ext}"
    query = ids.signed_query(reg.settings.signing_secret.get_secret_value(), "GET", path,
                             cfg.real(cfg.result_url_ttl_s))
    return responses.ok(_with_interval(cfg, {"task_status": "success", "error": None,
                                             "results": {"url": f"{base_url(request)}{path}?{query}"}}))


@router.get("/_storage/result/{name}")
async def download_result(name: str, request: Request) -> Response:
    """S3-like presigned GET: no auth header; JPEG (or PNG, WebP) bytes sent as `binary/octet-stream`."""
    reg = registry(request)
    problem = ids.check_signature(
        reg.settings.signing_secret.get_secret_value(), "GET", request.url.path,
        request.query_params.get("expires"), request.query_params.get("signature"))
    if problem == "SignatureDoesNotMatch":
        return responses.s3_error(403, problem, "The request signature we calculated does not "
                                  "match the signature you provided.")
    if problem:
        return responses.s3_error(403, "AccessDenied", "Request has expired")
    with reg.lock:
        owner = reg.result_tokens.get(name.removesuffix(".jpg").removesuffix(".png").removesuffix(".webp"))
    st = reg.state(owner[0]) if owner else None
    with (st.lock if st else reg.lock):
        task = st.tasks.get(owner[1]) if st and owner else None
    if st is not None:
        request.scope[KEY] = st.key
    if task is None or task.deleted or task.result_path is None or not task.result_path.exists():
        return responses.s3_error(404, "NoSuchKey", "The specified key does not exist.")
    return FileResponse(task.result_path, media_type="binary/octet-stream")
