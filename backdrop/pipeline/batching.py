"""Upload slots for several pictures in one File API call: the run's `UploadBatcher` gathers the slot requests
of concurrent rows and sends one `files[]` request when `max_batch` wait or the oldest has waited `linger`.

One call is in flight at a time, and it waits for the rate limiter (behind this process's creates, which go first:
`acquire(defer=True)`); right before it leaves, it takes the pictures that came meanwhile, up to `max_batch`
(`more`). So a call is as full as the pipeline can make it without holding a picture back while the limiter has
room. Each caller gets exactly its own slot (or its own error) and PUTs and creates as soon as it has it; nobody
waits for a whole batch's PUTs. The order of a batched answer is not published, its file names are: slots go to
their callers by file name (staged names are content hashes, so a name is a picture), never by position. If the
vendor refuses a batched request (a 400) or answers a different number of slots, a slot without a file name, or
slots for other file names, batching is off for the rest of the run (`state` says why) and the pictures it carried
are asked for again one file per request: the fallback fails no picture. A call that left with one picture is that
picture's own request. Any other error fails exactly the pictures of that call (their Prefect task retries them).
Free calls only: no money is at stake here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from backdrop.client import UploadSlot
from backdrop.client.models import FileSpec
from backdrop.errors import BackdropError

__all__ = ["SendFiles", "UploadBatcher", "by_file_name", "refusal_reason"]

class SendFiles(Protocol):
    """One File API call: the files asked for, and `more` (asked once, right before the request leaves, for files
    to add) -> the slots answered, in order (`BackdropClient.request_uploads`)."""

    def __call__(self, files: Sequence[FileSpec], *,
                 more: Callable[[], Sequence[FileSpec]] | None = None) -> Awaitable[list[UploadSlot]]: ...


def refusal_reason(asked: Sequence[FileSpec], answer: list[UploadSlot] | BaseException) -> str | None:
    """Why this answer to a batched request means "no batches here", or None when it is a usable answer
    (or an error that is not a refusal of the batch)."""
    if isinstance(answer, BaseException):
        if isinstance(answer, BackdropError) and answer.status == 400:
            code = f" {answer.error_code}" if answer.error_code else ""
            return f"the vendor refused a batched request (400{code}: {(answer.message or '')[:120]})"
        return None
    if len(answer) != len(asked):
        return f"the vendor answered {len(answer)} upload slots for {len(asked)} files"
    if len(asked) > 1 and any(s.file_name is None for s in answer):
        return "the vendor answered upload slots without file names (the order of its answer is not published)"
    named = [s.file_name if s.file_name is not None else f["file_name"] for s, f in zip(answer, asked, strict=True)]
    if sorted(named) != sorted(f["file_name"] for f in asked):
        return "the vendor answered upload slots for other file names than asked"
    return None


def by_file_name(asked: Sequence[FileSpec], answer: Sequence[UploadSlot]) -> list[UploadSlot]:
    """The answer's slots in the order asked, matched by file name (an answer `refusal_reason` accepted); equal
    names (the same picture asked twice) take their slots in the answer's order."""
    pool: dict[str, list[UploadSlot]] = {}
    for slot, spec in zip(answer, asked, strict=True):  # an unnamed slot: only ever one file asked
        pool.setdefault(slot.file_name if slot.file_name is not None else spec["file_name"], []).append(slot)
    return [pool[f["file_name"]].pop(0) for f in asked]


@dataclass
class _Waiting:
    spec: FileSpec
    future: asyncio.Future[UploadSlot]
    since: float


class UploadBatcher:
    """Gathers slot requests on one event loop; see the module docstring. `sleep` and `clock` are injectable."""

    def __init__(self, send: SendFiles, *, max_batch: int, linger: float,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send, self.max_batch, self.linger = send, max(1, max_batch), linger
        self._sleep, self._clock = sleep, clock
        self._waiting: list[_Waiting] = []
        self._worker: asyncio.Task[None] | None = None
        self._more = asyncio.Event()
        #: why batching is off for the rest of the run (None: on)
        self.refused: str | None = None
        #: File API calls made, and the files they carried
        self.calls = 0
        self.files = 0

    @property
    def state(self) -> str:
        """For the summary: "on (N=10)", "off (N=1)" or "off: <why>"."""
        if self.refused:
            return f"off: {self.refused}; one file per request for the rest of the run"
        return f"on (N={self.max_batch})" if self.max_batch > 1 else "off (N=1)"

    async def slot(self, spec: FileSpec) -> UploadSlot:
        """This file's upload slot (or its own error)."""
        if self.max_batch <= 1 or self.refused:
            return await self._one(spec)
        future: asyncio.Future[UploadSlot] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(spec, future, self._clock()))
        self._more.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="backdrop-upload-batcher")
        return await future

    async def aclose(self) -> None:
        """Stop the worker; anyone still waiting gets CancelledError."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for w in self._take(len(self._waiting)):
            w.future.cancel()

    async def _one(self, spec: FileSpec) -> UploadSlot:
        self.calls, self.files = self.calls + 1, self.files + 1
        return _only_slot(await self._send([spec]))

    def _take(self, n: int) -> list[_Waiting]:
        live = [w for w in self._waiting if not w.future.done()]  # a cancelled caller needs no slot
        taken, self._waiting = live[:n], live[n:]
        return taken

    async def _drain(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                await self._gather()
                batch = self._take(self.max_batch)
                if batch:
                    await self._dispatch(batch)
        except BaseException as exc:  # cancelled, or a bug: nobody may wait forever, the batch in flight included
            for w in [*batch, *self._take(len(self._waiting))]:
                if w.future.done():
                    continue
                if isinstance(exc, Exception):
                    w.future.set_exception(exc)
                else:
                    w.future.cancel()
            raise

    async def _gather(self) -> None:
        """Until `max_batch` wait, or the oldest has waited `linger`."""
        while self._waiting and len(self._waiting) < self.max_batch and not self.refused:
            left = self._waiting[0].since + self.linger - self._clock()
            if left <= 0:
                return
            self._more.clear()
            more = asyncio.ensure_future(self._more.wait())
            timer = asyncio.ensure_future(self._sleep(left))
            try:
                await asyncio.wait({more, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (more, timer):
                    t.cancel()

    async def _dispatch(self, batch: list[_Waiting]) -> None:
        if self.refused:
            await asyncio.gather(*(self._single(w) for w in batch))
            return

        def more() -> list[FileSpec]:  # the call leaves now: the pictures that came while it waited ride along
            extra = self._take(self.max_batch - len(batch))
            batch.extend(extra)
            return [w.spec for w in extra]

        self.calls += 1
        try:
            answer: list[UploadSlot] | BaseException = await self._send([w.spec for w in batch], more=more)
        except Exception as exc:  # noqa: BLE001 - decided below: a refusal, or this batch's error
            answer = exc
        finally:
            self.files += len(batch)  # cancelled too: the call may have carried them
        if len(batch) == 1:  # it left with one file: its own answer, as a one-file request's
            if not batch[0].future.done():
                if not isinstance(answer, BaseException) and not answer:
                    answer = _no_slot()
                if isinstance(answer, BaseException):
                    batch[0].future.set_exception(answer)
                else:
                    batch[0].future.set_result(answer[0])
            return
        specs = [w.spec for w in batch]
        why = refusal_reason(specs, answer)
        if why is not None:
            self.refused = why
            batch.extend(self._take(len(self._waiting)))  # the rest of the run goes one file per request
            await asyncio.gather(*(self._single(w) for w in batch))
            return
        if isinstance(answer, BaseException):
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(answer)
            return
        for w, slot in zip(batch, by_file_name(specs, answer), strict=True):
            if not w.future.done():
                w.future.set_result(slot)

    async def _single(self, w: _Waiting) -> None:
        try:
            slot = await self._one(w.spec)
        except Exception as exc:  # noqa: BLE001 - this file's own error, for its caller
            if not w.future.done():
                w.future.set_exception(exc)
            return
        if not w.future.done():
            w.future.set_result(slot)


def _no_slot() -> BackdropError:
    return BackdropError("the File API answered no upload slot")


def _only_slot(slots: list[UploadSlot]) -> UploadSlot:
    """The slot of a one-file request: the first (as before batching)."""
    if not slots:
        raise _no_slot()
    return slots[0]
