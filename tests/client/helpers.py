"""Helpers for the client's unit tests: httpx.MockTransport fakes (no network), settings, images."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from backdrop.client import BackdropClient
from backdrop.settings import BackdropSettings

API = "https://api.test"
KEY = "sk-test-4f9a1c2e-very-secret"

Handler = Callable[[httpx.Request], httpx.Response]


class NoWait:
    """A limiter that never waits, counting acquisitions and the tickets settled."""

    def __init__(self) -> None:
        self.acquired = 0
        self.settled: list[int] = []
        self.owed: set[str] = set()

    async def acquire(self, *, can_wait: bool = False, starts_task: bool = False, due_in: float = 0.0,
                      defer: bool = False) -> int:
        self.acquired += 1
        return self.acquired

    async def settle(self, ticket: object, *, owe: str | None = None, paid: str | None = None) -> None:
        assert isinstance(ticket, int)
        self.settled.append(ticket)
        if owe is not None:
            self.owed.add(owe)
        if paid is not None:
            self.owed.discard(paid)

    async def owe(self, ref: str) -> None:
        self.owed.add(ref)

    async def paid(self, ref: str) -> None:
        self.owed.discard(ref)


@dataclass
class SleepRecorder:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class Recorder:
    """Answers requests from a list of responses/exceptions (or a function) and keeps them."""

    steps: list[httpx.Response | Exception | Handler] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        if not self.steps:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        return step

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def api_json(status: int, body: Any, request_id: str | None = "7301234567890123") -> httpx.Response:
    headers = {"x-request-id": request_id} if request_id else {}
    return httpx.Response(status, json=body, headers=headers)


def make_settings(**overrides: Any) -> BackdropSettings:
    fields: dict[str, Any] = {
        "api_url": API,
        "api_key": KEY,
        "feature": "bg-replace",
        "max_retries": 4,
        "backoff_base_seconds": 1.0,
        "backoff_max_seconds": 30.0,
    }
    fields.update(overrides)
    return BackdropSettings(**fields)


def make_client(
    api: Recorder | None = None,
    storage: Recorder | None = None,
    *,
    sleep: SleepRecorder | None = None,
    limiter: NoWait | None = None,
    seed: int = 7,
    **overrides: Any,
) -> BackdropClient:
    return BackdropClient(
        make_settings(**overrides),
        limiter=limiter or NoWait(),
        transport=(api or Recorder()).transport,
        storage_transport=(storage or Recorder()).transport,
        sleep=sleep or SleepRecorder(),
        rng=random.Random(seed),
    )


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


def body_json(recorder: Recorder, index: int = -1) -> Any:
    return json.loads(recorder.bodies[index])


#: Window edges closer than this are treated as apart: wall-clock floats near 1.8e9 s carry
#: rounding of ~2e-7 s, and `slot = kth + seconds` must not count `kth` back in.
EDGE = 1e-6


class FakeClock:
    """A clock the test moves: `sleep` advances it instead of waiting."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def worst_window(times: Sequence[float], seconds: float) -> int:
    """The most events found in any half-open window (t - seconds, t]."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - seconds + EDGE:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
