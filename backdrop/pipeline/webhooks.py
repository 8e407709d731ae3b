"""Receive the vendor's Standard Webhooks deliveries during a run, so a waiting task needs no poll.

`WebhookReceiver` serves `POST /webhooks/perfectcorp` on uvicorn in a background thread and lets any thread or
event loop `await wait(task_id, timeout)` for the terminal status; each delivery is checked by
`backdrop.pipeline.webhook_signing` (signature, timestamp, body, replay).

Answers: 204 for a verified delivery acted on, 200 for a verified replay (acknowledged, not acted
on again, so the vendor stops retrying), 400 for a rejected one (bad or missing signature, stale
timestamp, malformed body), 404/405/413 for a wrong path, method or an oversized body. The secret
and the signatures are never logged nor put in an error message.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn

from backdrop.errors import ConfigError, WebhookRejected
from backdrop.pipeline.webhook_signing import ReplayGuard, WebhookEvent, decode_secret, verify_with_key
from backdrop.settings import BackdropSettings

__all__ = ["WEBHOOK_PATH", "WebhookReceiver"]

WEBHOOK_PATH = "/webhooks/perfectcorp"
TERMINAL = frozenset({"success", "error"})
MAX_BODY = 64 * 1024
log = logging.getLogger("backdrop.pipeline.webhooks")


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[str]
    status: str | None = None  # set under the receiver's lock by the delivering thread


def _resolve(future: asyncio.Future[str], status: str) -> None:
    if not future.done():
        future.set_result(status)


@dataclass
class _Counters:
    deliveries: int = 0
    verified: int = 0
    rejected: int = 0
    replays: int = 0
    ignored: int = 0  # verified, but not a terminal status

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"webhook listen address {listen!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(eq=False)
class WebhookReceiver:
    """Serve `POST /webhooks/perfectcorp` in a background thread and record terminal states.

    Use as a context manager. Statuses that arrive before anyone waits are kept (at most
    `max_pending`, oldest dropped) and forgotten once a `wait` collects them.
    """

    secret: str = field(repr=False)
    listen: str = "127.0.0.1:0"
    tolerance_s: float = 300.0
    max_pending: int = 10_000
    replay_guard: ReplayGuard = field(default_factory=ReplayGuard, repr=False)

    def __post_init__(self) -> None:
        self._key = decode_secret(self.secret)
        self._host, self._port = _split_listen(self.listen)
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, str] = OrderedDict()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._counters = _Counters()
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: BackdropSettings) -> WebhookReceiver | None:
        """The receiver the settings ask for, or None when `webhook_listen` is unset."""
        if not settings.webhook_listen:
            return None
        if settings.webhook_secret is None:
            raise ConfigError("BACKDROP_WEBHOOK_LISTEN is set but BACKDROP_WEBHOOK_SECRET is not")
        return cls(settings.webhook_secret.get_secret_value(), settings.webhook_listen)

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint's local URL (a wildcard bind is shown as loopback)."""
        if self._sock is None:
            raise RuntimeError("the webhook receiver is not running")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._host, self._host)  # noqa: S104 - binds nothing
        port = int(self._sock.getsockname()[1])
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return f"http://{netloc}{WEBHOOK_PATH}"

    def start(self, timeout_s: float = 10.0) -> WebhookReceiver:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # inherited by accepted sockets; without it each answer waits ~40 ms (Nagle + delayed ACK)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self._host, self._port))
            sock.listen(128)
        except OSError:  # the address is taken (the run polls instead): close the socket, leak nothing
            sock.close()
            raise
        self._sock = sock
        config = uvicorn.Config(self._app, interface="asgi3", log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="backdrop-webhooks", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"webhook receiver did not start on {self.listen}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> WebhookReceiver:
        return self.start() if self._thread is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- waiting -----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """deliveries, verified, rejected, replays, ignored (since start)."""
        with self._lock:
            return self._counters.snapshot()

    async def wait(self, task_id: str, timeout: float) -> str | None:  # noqa: ASYNC109 - None is an answer
        """`"success"`/`"error"` once a verified delivery for `task_id` came; None at the timeout.

        Safe from any thread and event loop: the shared state is behind a threading lock, and the
        delivering thread wakes this call's own future on its own loop.
        """
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future())
        with self._lock:
            status = self._pending.pop(task_id, None)
            if status is not None or timeout <= 0:
                return status
            self._waiters.setdefault(task_id, []).append(waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            self._unregister(task_id, waiter, keep_status=True)
            raise
        self._unregister(task_id, waiter, keep_status=False)
        return waiter.status  # set under the lock even if the wake-up lost the race to the timeout

    def _unregister(self, task_id: str, waiter: _Waiter, *, keep_status: bool) -> None:
        with self._lock:
            waiters = self._waiters.get(task_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[task_id]
            elif keep_status and waiter.status is not None:
                # a cancelled wait leaves a status that came meanwhile for the next wait
                self._pending[task_id] = waiter.status

    def _record(self, event: WebhookEvent) -> None:
        with self._lock:
            waiters = self._waiters.pop(event.task_id, [])
            for waiter in waiters:
                waiter.status = event.task_status
                try:
                    waiter.loop.call_soon_threadsafe(_resolve, waiter.future, event.task_status)
                except RuntimeError:  # that loop is closed: its waiter is gone
                    pass
            if not waiters:
                self._pending[event.task_id] = event.task_status
                self._pending.move_to_end(event.task_id)
                while len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)

    # ---- HTTP --------------------------------------------------------------------------------

    def _handle(self, headers: Mapping[str, str], body: bytes) -> int:
        """The status code for one delivery to the endpoint (after path and method checks)."""
        with self._lock:
            self._counters.deliveries += 1
        try:
            event = verify_with_key(self._key, headers, body, self.tolerance_s, None)
        except WebhookRejected as exc:
            with self._lock:
                self._counters.rejected += 1
            log.warning("webhook rejected: %s", exc.reason)
            return 400
        fresh = self.replay_guard.admit(event.id)
        with self._lock:
            self._counters.verified += 1
            self._counters.replays += not fresh
            self._counters.ignored += fresh and event.task_status not in TERMINAL
        if fresh and event.task_status in TERMINAL:
            self._record(event)
        return 204 if fresh else 200

    async def _app(self, scope: dict[str, Any], receive: Callable[[], Any],
                   send: Callable[[dict[str, Any]], Any]) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != WEBHOOK_PATH:
            status = 404
        elif scope["method"] != "POST":
            status = 405
        else:
            body = await _read_body(receive)
            if body is None:
                status = 413
            else:
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                status = self._handle(headers, body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


async def _read_body(receive: Callable[[], Any]) -> bytes | None:
    """The request body, or None once it exceeds MAX_BODY (a task notification is ~100 bytes)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
