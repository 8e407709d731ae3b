"""The outermost ASGI layer: request ids, auth, rate limits, faults, dropped connections, journal.

It wraps the whole FastAPI stack (outside Starlette's error middleware) so that it holds the
server's own `send`: that is what lets it drop a connection at the TCP level.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import ids, responses
from .ratelimit import admit
from .state import KeyState, Registry

log = logging.getLogger("backdrop.sandbox")

KEY = "sandbox.key"  # scope entry: the API key the request acts for
LOSE_IF_CREATED = "sandbox.lose_if_created"  # the create should lose its answer (fault roll)
DROP = "sandbox.drop"  # set by a handler: swallow the answer and drop the connection

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/s2s/v2\.0/file(/[^/]+)?$"), "file"),
    ("GET", re.compile(r"^/s2s/v2\.0/task/template/[^/]+$"), "templates"),
    ("POST", re.compile(r"^/s2s/v2\.0/task/delete$"), "delete"),
    ("POST", re.compile(r"^/s2s/v2\.0/task/[^/]+$"), "create"),
    ("GET", re.compile(r"^/s2s/v2\.0/task/[^/]+/[^/]+$"), "poll"),
    ("GET", re.compile(r"^/s2s/v1\.0/client/credit$"), "credit"),
    ("GET", re.compile(r"^/s2s/v1\.0/client/credit/history$"), "history"),
    ("GET", re.compile(r"^/s2s/v2\.0/credit/feature-cost$"), "feature_cost"),
]


def route_name(method: str, path: str) -> str:
    if path.startswith("/_storage/upload/"):
        return "storage_upload"
    if path.startswith("/_storage/result/"):
        return "storage_result"
    for verb, pattern, name in _ROUTES:
        if verb == method and pattern.match(path):
            return name
    return "other"


def bearer_key(scope: Scope) -> str | None:
    """The key of an `Authorization: Bearer <key>` header (exactly one space), else None."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            return text[7:] if text.startswith("Bearer ") and len(text) > 7 else None
    return None


def mask(key: str) -> str:
    return "*" * max(0, len(key) - 4) + key[-4:]


class Dropped(Exception):
    """Raised only where the server gives no transport to abort (e.g. an in-process test client)."""


async def drop_connection(send: Send, receive: Receive) -> None:
    """Reset the TCP connection without a byte of answer.

    Relies on uvicorn handing the app its cycle's bound `send`, whose owner holds the asyncio
    transport; elsewhere raise, and the server answers or closes as it sees fit.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise Dropped("connection dropped by a sandbox fault")
    transport.abort()
    try:
        async with asyncio.timeout(2.0):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass


class Gate:
    def __init__(self, app: ASGIApp, registry: Registry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ids.request_id()
        received = time.time()  # when the rate limits counted it; "time" below is when it was answered
        path: str = scope["path"]
        method: str = scope["method"]
        route = route_name(method, path)
        status: dict[str, Any] = {"code": None, "fault": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                if scope.get(DROP):
                    status["fault"] = status["fault"] or "lost"
                    return
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode())]}
            elif scope.get(DROP):
                return
            await send(message)

        async def answer(resp: Any) -> None:
            await resp(scope, receive, send_with_id)

        try:
            if path.startswith("/s2s/"):
                await self._vendor(scope, receive, send, send_with_id, answer, route, status)
            else:
                await self.app(scope, receive, send_with_id)
            if scope.get(DROP):
                await drop_connection(send, receive)
        finally:
            key = scope.get(KEY)
            if key is not None and not path.startswith("/_sandbox/"):
                client = scope.get("client") or ("", 0)
                entry = {"time": time.time(), "received": received, "method": method, "path": path,
                         "status": status["code"], "key": mask(key), "client": client[0],
                         "request_id": rid, "route": route}
                if status["fault"]:
                    entry["fault"] = status["fault"]
                self.registry.state(key).journal_add(entry)

    async def _vendor(self, scope: Scope, receive: Receive, send: Send, send_with_id: Send,
                      answer: Any, route: str, status: dict[str, Any]) -> None:
        key = bearer_key(scope)
        if key is None or not self.registry.key_allowed(key):
            credit = scope["path"].startswith("/s2s/v1.0/client/credit")
            body = responses.INVALID_ACCESS_TOKEN if credit else responses.INVALID_API_KEY
            await answer(responses.json_body(body))
            return
        scope[KEY] = key
        st = self.registry.state(key)
        cfg = st.config
        if cfg.rate_limit_enabled:
            client = (scope.get("client") or ("?", 0))[0]
            buckets = [st.bucket]
            if cfg.rate_limit_per_ip:
                buckets.append(self.registry.ip_bucket(client))
            if not admit(buckets, limit=cfg.rate_limit_requests,
                         window_s=cfg.real(cfg.rate_limit_window_s),
                         per_second=cfg.rate_limit_per_second, second_s=cfg.real(1.0)):
                status["fault"] = "rate_limit"
                await answer(responses.json_body(responses.TOO_MANY_REQUESTS))
                return
        if route in cfg.fault_routes:
            fault = self._roll(st, route)
            if fault is not None:
                status["fault"] = fault
                if fault == "429":
                    await answer(responses.json_body(responses.TOO_MANY_REQUESTS))
                    return
                if fault.startswith("5"):
                    await answer(responses.for_status(int(fault)))
                    return
                if fault == "drop":
                    await drop_connection(send, receive)
                    return
                if fault == "slow":
                    await asyncio.sleep(cfg.real(cfg.fault_slow_s))
                if fault == "lose":
                    scope[LOSE_IF_CREATED] = True
                    status["fault"] = None  # journaled as "lost" only if a task was created
        await self.app(scope, receive, send_with_id)

    @staticmethod
    def _roll(st: KeyState, route: str) -> str | None:
        """At most one fault for this request, deterministic by (seed, kind, request count)."""
        cfg = st.config
        with st.lock:
            if st.burst_left > 0:
                st.burst_left -= 1
                return "429"
        if cfg.fault_429_burst_rate and st.rng("burst").random() < cfg.fault_429_burst_rate:
            with st.lock:
                st.burst_left = cfg.fault_429_burst_len - 1
            return "429"
        if cfg.fault_5xx_rate:
            rng = st.rng("5xx")
            if rng.random() < cfg.fault_5xx_rate:
                return str(rng.choice([500, 502, 503]))
        if cfg.fault_drop_rate and st.rng("drop").random() < cfg.fault_drop_rate:
            return "drop"
        if cfg.fault_slow_rate and st.rng("slow").random() < cfg.fault_slow_rate:
            return "slow"
        if (route == "create" and cfg.fault_lost_create_rate
                and st.rng("lost").random() < cfg.fault_lost_create_rate):
            return "lose"
        return None


