"""The one retry loop: pace, send, map the failure, decide by type, back off with full jitter."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from backdrop.client._errors import describe, error_from_transport
from backdrop.client._http import Policy, backoff_delay, should_retry
from backdrop.client.models import ClientStats
from backdrop.errors import AmbiguousCreate, BackdropError, NotSent, RateLimited
from backdrop.pacing.memory import RateLimiter
from backdrop.redact import scrub
from backdrop.settings import BackdropSettings

T = TypeVar("T")


class Retrier:
    def __init__(
        self,
        settings: BackdropSettings,
        *,
        limiter: RateLimiter,
        stats: ClientStats,
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        secret: str | None,
    ) -> None:
        self._settings = settings
        self._limiter = limiter
        #: the limiter, for the task calls to say which tasks are owed polls (`RateLimiter.owe`)
        self.limiter = limiter
        self._stats = stats
        self._sleep = sleep
        self._rng = rng
        self._secret = secret

    def delay(self, retry: int) -> float:
        s = self._settings
        return backoff_delay(
            retry, base=s.backoff_base_seconds, cap=s.backoff_max_seconds, rng=self._rng
        )

    async def run(
        self, route: str, policy: Policy, attempt: Callable[[], Awaitable[T]], *, paced: bool = True,
        debt: Callable[[T], tuple[str | None, str | None]] | None = None, due_in: float = 0.0,
    ) -> T:
        """Run `attempt` until it returns or fails for good. `paced` attempts (API routes) first
        await the limiter; storage attempts do not. `debt` reads an answer's (task running, task ended) for the
        limiter, told as the slot is settled (`RateLimiter.settle`); `due_in`: a poll this early (`acquire`).

        Under Policy.CREATE, once the request may have left only a definite refusal (`err.refused`:
        the vendor's error body with a 4xx, a connection never made) escapes as itself; everything else
        (the documented missing-upload 500 included) becomes AmbiguousCreate.
        """
        retry = 0
        while True:
            # polls first: uploads and creates book only a short way ahead, and only while the polls of the tasks
            # already running and of one more still fit (the task counts as running from its create's booking). A
            # slot call waits for that room too, and lets the creates waiting for it go first: its pictures could
            # not create sooner, and while it waits, the batcher's next call gathers more pictures (fewer slot
            # calls a picture)
            try:
                new_work = route in ("file", "create")
                ticket = await self._limiter.acquire(can_wait=new_work, starts_task=new_work, due_in=due_in,
                                                     defer=route == "file") if paced else None
            except Exception as exc:
                if policy is not Policy.CREATE:
                    raise
                # nothing was sent yet: the create is definitely not made
                raise NotSent(f"the rate limiter failed before sending: {type(exc).__name__}") from exc
            self._stats.count_request(route)
            owe = paid = None
            try:
                answer = await attempt()
                if debt is not None:
                    with contextlib.suppress(Exception):  # room for polls never turns an answer into an error
                        owe, paid = debt(answer)
                return answer
            except httpx.TransportError as exc:
                self._stats.bump("transport_errors")
                err: BackdropError = error_from_transport(
                    exc, _request_of(exc), secret=self._secret
                )
                err.__cause__ = exc
            except BackdropError as exc:
                err = exc
            except Exception as exc:
                # e.g. httpx.DecodingError (a body labelled gzip that is not), a parser's
                # RecursionError, a bug: the request may have been answered, and the answer is lost
                if policy is not Policy.CREATE:
                    raise
                raise AmbiguousCreate(
                    "the create request may have reached the server and its answer could not be "
                    "read; reconcile before creating again "
                    f"({type(exc).__name__}: {scrub(str(exc), self._secret)[:300]})",
                ) from exc
            finally:
                if ticket is not None:  # the answer is in: the server counted the request by now
                    with contextlib.suppress(Exception):  # costs only pacing precision, never the answer
                        await self._limiter.settle(ticket, owe=owe, paid=paid)
            if isinstance(err, RateLimited):
                self._stats.bump("http_429")
            if policy is Policy.CREATE and not err.refused:
                raise AmbiguousCreate(
                    "the create request may have reached the server and no usable answer came "
                    f"back; reconcile before creating again ({describe(err)})",
                    status=err.status,
                    request_id=err.request_id,
                ) from err
            if retry >= self._settings.max_retries or not should_retry(err, policy):
                raise err
            retry += 1
            self._stats.bump("retries")
            await self._sleep(self.delay(retry))


def _request_of(exc: httpx.TransportError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:
        return None
