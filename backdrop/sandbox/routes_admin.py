"""Admin API under `/_sandbox/`: health, reset, config, ledger, journal, tasks, webhooks, thumbs.

Scoped by the same `Authorization: Bearer <key>` as the vendor routes (any key the sandbox
accepts gets fresh state); never rate limited, never faulted. When the sandbox has an admin token
(always, once bound to a non-loopback address), every route here also needs it in the
`X-Sandbox-Admin-Token` header: 401 without it, 403 with a wrong one.
"""

from __future__ import annotations

import hmac
import io
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import ValidationError

from . import imaging, responses
from ._common import Reject, json_object, registry
from .gate import bearer_key
from .state import KeyState

ADMIN_HEADER = "x-sandbox-admin-token"


def _admin_token(request: Request) -> None:
    token = request.app.state.settings.admin_token
    if token is None:
        return
    given = request.headers.get(ADMIN_HEADER)
    if given is None:
        raise Reject(responses.error(401, "the sandbox's admin routes need the X-Sandbox-Admin-Token header"))
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Reject(responses.error(403, "wrong admin token"))


router = APIRouter(prefix="/_sandbox", dependencies=[Depends(_admin_token)])


def _state(request: Request) -> KeyState:
    key = bearer_key(request.scope)
    reg = registry(request)
    if key is None or not reg.key_allowed(key):
        raise Reject(responses.json_body(responses.INVALID_API_KEY))
    return reg.state(key)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.post("/reset")
async def reset(request: Request) -> dict[str, str]:
    st = _state(request)
    registry(request).reset(st.key)
    return {"status": "reset"}


@router.get("/config")
async def get_config(request: Request) -> dict[str, Any]:
    return _state(request).config.public()


@router.patch("/config")
async def patch_config(request: Request) -> Response:
    st = _state(request)
    changes = await json_object(request)
    try:
        cfg = st.patch_config(changes)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return responses.invalid(f"{where}: {first['msg']}")
    except ValueError as exc:
        return responses.invalid(str(exc))
    return JSONResponse(cfg.public())


@router.get("/ledger")
async def get_ledger(request: Request) -> dict[str, Any]:
    st = _state(request)
    with st.lock:
        charges = [{"task_id": c.task_id, "units": c.units, "time": c.time} for c in st.charges]
        return {"balance": st.balance, "starting_balance": st.config.starting_balance,
                "charges": charges}


@router.put("/ledger")
async def put_ledger(request: Request) -> Response:
    st = _state(request)
    body = await json_object(request)
    balance = body.get("balance")
    if not isinstance(balance, int) or isinstance(balance, bool):
        return responses.invalid("balance must be an integer")
    st.set_balance(balance)
    return JSONResponse(await get_ledger(request))


@router.get("/journal")
async def journal(request: Request) -> list[dict[str, Any]]:
    st = _state(request)
    with st.lock:
        return list(st.journal)


@router.get("/tasks")
async def tasks(request: Request) -> list[dict[str, Any]]:
    st = _state(request)
    with st.lock:
        rows = list(st.tasks.values())
    for task in rows:
        st.live_task(task.task_id)  # marks polling-window expiry as of now
    return [t.view() for t in rows]


@router.get("/webhooks")
async def webhooks(request: Request) -> list[dict[str, Any]]:
    st = _state(request)
    with st.lock:
        return [{**w, "attempts": list(w["attempts"])} for w in st.webhooks]


def _thumb(cache: dict[str, bytes], template_id: str) -> bytes:
    if template_id not in cache:  # a race only composes twice; the dict write is atomic
        buf = io.BytesIO()
        Image.new("RGB", (96, 64), (128, 128, 128)).save(buf, "JPEG")
        cache[template_id] = imaging.compose(buf.getvalue(), template_id=template_id)
    return cache[template_id]


@router.get("/templates/{name}")
async def template_thumb(name: str, request: Request) -> Response:
    template_id = name.removesuffix(".jpg")
    if template_id not in {t["id"] for t in imaging.TEMPLATES}:
        return responses.json_body(responses.NOT_FOUND)
    data = await anyio.to_thread.run_sync(_thumb, request.app.state.thumbs, template_id)
    return Response(data, media_type="image/jpeg")
