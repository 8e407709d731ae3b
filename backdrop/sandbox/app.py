"""The sandbox app factory: `create_app(settings)` builds a fresh, self-contained FastAPI app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from . import engine, responses, routes_admin, routes_credit, routes_files, routes_tasks
from ._common import Reject
from .gate import Gate
from .settings import SandboxSettings
from .state import KeyState, Registry
from .webhooks import Deliverer

log = logging.getLogger("backdrop.sandbox")
TICK_S = 0.025


class SandboxApp(FastAPI):
    """FastAPI with the sandbox's gate as the outermost layer (see `gate.py` for why)."""

    def build_middleware_stack(self) -> ASGIApp:
        return Gate(super().build_middleware_stack(), self.state.registry)


async def _ticker(app: FastAPI) -> None:
    """Finish due tasks even if nobody polls, and forget tasks past their TTL."""
    registry: Registry = app.state.registry
    deliverer: Deliverer = app.state.deliverer
    loop = asyncio.get_running_loop()
    last_purge = 0.0
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-engine") as pool:
        while True:
            now = time.monotonic()
            for task in registry.pop_due(now):
                st = registry.keys.get(task.key)
                if st is None:
                    continue
                fut = pool.submit(engine.process, st, task)

                def done(f: Future[engine.Finished | None], st: KeyState = st) -> None:
                    loop.call_soon_threadsafe(_after, f, st, deliverer)

                fut.add_done_callback(done)
            if now - last_purge > 0.25:
                registry.purge()
                last_purge = now
            await asyncio.sleep(TICK_S)


def _after(fut: Future[engine.Finished | None], st: KeyState, deliverer: Deliverer) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("sandbox engine failed", exc_info=exc)
        return
    done = fut.result()
    if done is not None:
        deliverer.notify(st, done)


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    """A new sandbox with its own state; nothing is shared between two apps."""
    settings = settings or SandboxSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ticker = asyncio.create_task(_ticker(app))
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await app.state.deliverer.aclose()
            app.state.registry.close()

    app = SandboxApp(title="Backdrop sandbox", lifespan=lifespan, docs_url=None, redoc_url=None,
                     openapi_url=None)
    app.state.registry = Registry(settings)
    app.state.deliverer = Deliverer(settings.webhook_secret.get_secret_value())
    app.state.thumbs = {}
    app.state.settings = settings

    @app.exception_handler(Reject)
    async def _reject(request: Request, exc: Reject) -> Response:
        return exc.response

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return responses.json_body(responses.NOT_FOUND)
        return responses.error(exc.status_code, str(exc.detail))

    for module in (routes_files, routes_tasks, routes_credit, routes_admin):
        app.include_router(module.router)
    return app
