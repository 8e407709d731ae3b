"""The upload-slot batcher (`backdrop.pipeline.batching`): gathering, linger, the N cap, one call in flight, the
fallback on a refused or short answer, and errors that fail exactly the pictures of their call. An injected clock;
the File API is a fake `send` (the batcher's only collaborator)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backdrop.client import UploadSlot
from backdrop.client.models import FileSpec
from backdrop.errors import InvalidParameters, ServerError
from backdrop.pipeline.batching import UploadBatcher

pytestmark = pytest.mark.anyio
LINGER = 0.3


class Clock:
    """Virtual time: `sleep` waits until the test `advance`s past its deadline."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.t + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        await settle()  # whatever was started asks at the current time first
        self.t += seconds
        for deadline, fut in list(self.sleepers):
            if deadline <= self.t + 1e-9 and not fut.done():
                fut.set_result(None)
        self.sleepers = [(d, f) for d, f in self.sleepers if not f.done()]
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class Vendor:
    """A fake File API: answers one slot per file, or what `answers` says for the next calls."""

    def __init__(self, *answers: Any, refuse_batches: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.answers = list(answers)
        self.refuse_batches = refuse_batches
        self.gate: asyncio.Event | None = None
        self.ids = itertools.count()

    async def send(self, files: Sequence[FileSpec], *,
                   more: Callable[[], Sequence[FileSpec]] | None = None) -> list[UploadSlot]:
        names = [f["file_name"] for f in files]
        self.calls.append(names)
        if self.gate is not None:  # the wait for the rate limiter: then the request leaves, with `more`
            await self.gate.wait()
        if more is not None:
            extra = list(more())
            names.extend(f["file_name"] for f in extra)
            files = [*files, *extra]
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "400-then-hold":  # this call is refused; the next ones wait for the gate
            self.gate, answer = asyncio.Event(), "400"
        if self.refuse_batches and len(files) > 1:
            answer = "400"
        if answer == "400":
            raise InvalidParameters("files: array is too long", status=400, error_code="InvalidParameters")
        if answer == "503":
            raise ServerError("unavailable", status=503)
        slots = [UploadSlot(file_id=f"id{next(self.ids)}-{n}", url="https://s.example/put", method="PUT",
                            headers={}, file_name=None if answer == "unnamed" else n) for n in names]
        if answer == "reversed":
            return slots[::-1]
        if answer == "shuffled":
            return slots[1:] + slots[:1]
        return slots[:1] if answer == "short" else slots


def spec(i: int) -> FileSpec:
    return {"content_type": "image/jpeg", "file_name": f"p{i}.jpg", "file_size": 100 + i}


def batcher(vendor: Vendor, clock: Clock, n: int = 10) -> UploadBatcher:
    return UploadBatcher(vendor.send, max_batch=n, linger=LINGER, sleep=clock.sleep, clock=clock.now)


def start(b: UploadBatcher, ids: range) -> list[asyncio.Task[UploadSlot]]:
    return [asyncio.ensure_future(b.slot(spec(i))) for i in ids]


async def test_n_waiting_requests_share_one_call_at_once() -> None:
    vendor, clock = Vendor(), Clock()
    b = batcher(vendor, clock)
    tasks = start(b, range(10))
    await settle()  # no time passes: N are waiting, so the call goes now
    assert vendor.calls == [[f"p{i}.jpg" for i in range(10)]]
    slots = await asyncio.gather(*tasks)
    assert [s.file_name for s in slots] == [f"p{i}.jpg" for i in range(10)]
    assert b.state == "on (N=10)"


async def test_a_small_batch_waits_only_the_linger() -> None:
    vendor, clock = Vendor(), Clock()
    b = batcher(vendor, clock)
    tasks = start(b, range(3))
    await clock.advance(LINGER - 0.1)
    assert vendor.calls == []
    await clock.advance(0.1)
    assert vendor.calls == [["p0.jpg", "p1.jpg", "p2.jpg"]]
    assert len({s.file_id for s in await asyncio.gather(*tasks)}) == 3


async def test_the_cap_splits_a_crowd_and_the_tail_lingers() -> None:
    vendor, clock = Vendor(), Clock()
    b = batcher(vendor, clock, n=10)
    tasks = start(b, range(25))
    await settle()
    assert [len(c) for c in vendor.calls] == [10, 10]
    await clock.advance(LINGER)
    assert [len(c) for c in vendor.calls] == [10, 10, 5]
    assert len({s.file_id for s in await asyncio.gather(*tasks)}) == 25


async def test_a_call_that_waited_takes_the_pictures_that_came_meanwhile_up_to_n() -> None:
    vendor, clock = Vendor(), Clock()
    vendor.gate = asyncio.Event()
    b = batcher(vendor, clock, n=10)
    first = start(b, range(2))
    await clock.advance(LINGER)
    assert [len(c) for c in vendor.calls] == [2]  # dispatched, waiting for the limiter, say
    later = start(b, range(2, 14))
    await clock.advance(5 * LINGER)
    assert [len(c) for c in vendor.calls] == [2]  # one call at a time
    vendor.gate.set()
    await settle()  # it leaves with 8 more (N in all), then the tail, which waited its linger during the flight
    assert vendor.calls == [[f"p{i}.jpg" for i in range(10)], [f"p{i}.jpg" for i in range(10, 14)]]
    slots = await asyncio.gather(*first, *later)
    assert [s.file_id.split("-", 1)[1] for s in slots] == [f"p{i}.jpg" for i in range(14)]


async def test_a_call_that_left_with_one_file_is_that_file_s_own_request() -> None:
    """A 400 to a call that carried one picture is that picture's error, not a refusal of batches."""
    vendor, clock = Vendor("400"), Clock()
    b = batcher(vendor, clock, n=4)
    task = start(b, range(1))[0]
    await clock.advance(LINGER)
    with pytest.raises(InvalidParameters):
        await task
    assert b.state == "on (N=4)" and vendor.calls == [["p0.jpg"]]


@pytest.mark.parametrize("answer", ["reversed", "shuffled"])
async def test_slots_go_to_their_pictures_by_file_name_whatever_the_answer_s_order(answer: str) -> None:
    vendor, clock = Vendor(answer), Clock()
    b = batcher(vendor, clock, n=4)
    tasks = start(b, range(4))
    await settle()
    slots = await asyncio.gather(*tasks)
    # the file id carries the name the fake vendor answered it for: a wrong slot would PUT one picture under
    # another's file id, and its task would pay for the wrong picture
    assert [s.file_id.split("-", 1)[1] for s in slots] == [f"p{i}.jpg" for i in range(4)]
    assert len(vendor.calls) == 1 and b.state == "on (N=4)"


@pytest.mark.parametrize("answer", ["400", "short", "unnamed"])
async def test_a_refused_batch_falls_back_one_file_per_request_and_fails_nobody(answer: str) -> None:
    vendor, clock = Vendor(answer), Clock()
    b = batcher(vendor, clock, n=4)
    tasks = start(b, range(6))
    await clock.advance(LINGER)
    slots = await asyncio.gather(*tasks)
    assert [s.file_name for s in slots] == [f"p{i}.jpg" for i in range(6)]
    assert vendor.calls[0] == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert all(len(c) == 1 for c in vendor.calls[1:]) and len(vendor.calls) == 7
    assert b.state.startswith("off: the vendor ")
    assert ("400" in b.state) == (answer == "400")
    assert ("without file names" in b.state) == (answer == "unnamed")
    late = await b.slot(spec(9))  # the rest of the run: one file per request, no linger
    assert late.file_name == "p9.jpg" and vendor.calls[-1] == ["p9.jpg"]


async def test_another_error_fails_exactly_the_pictures_of_its_call() -> None:
    vendor, clock = Vendor("503"), Clock()
    b = batcher(vendor, clock, n=3)
    tasks = start(b, range(5))
    await clock.advance(LINGER)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(o).__name__ for o in outcomes[:3]] == ["ServerError"] * 3
    assert [o.file_name for o in outcomes[3:]] == ["p3.jpg", "p4.jpg"]  # type: ignore[union-attr]
    assert b.state == "on (N=3)"


async def test_in_the_fallback_a_file_refused_alone_fails_alone() -> None:
    vendor, clock = Vendor("400", "ok", "400", "ok"), Clock()
    b = batcher(vendor, clock, n=3)
    tasks = start(b, range(3))
    await clock.advance(LINGER)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [isinstance(o, InvalidParameters) for o in outcomes] == [False, True, False]


async def test_a_cancelled_caller_is_left_out_of_the_call() -> None:
    vendor, clock = Vendor(), Clock()
    b = batcher(vendor, clock)
    tasks = start(b, range(3))
    await settle()
    tasks[1].cancel()
    await clock.advance(LINGER)
    assert vendor.calls == [["p0.jpg", "p2.jpg"]]
    await b.aclose()


@pytest.mark.parametrize("answer", ["ok", "400-then-hold"])
async def test_closing_mid_call_answers_the_pictures_of_the_call_in_flight(answer: str) -> None:
    """The pictures of a call in flight (a batch, or the one-file requests of a fallback) are no longer in the
    queue: stopping the worker must still answer them, or their upload tasks wait forever."""
    vendor, clock = Vendor(answer), Clock()
    if answer == "ok":
        vendor.gate = asyncio.Event()
    b = batcher(vendor, clock, n=3)
    tasks = start(b, range(5))
    await settle()  # three in flight, two waiting their linger
    await b.aclose()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes


async def test_n_of_one_never_batches() -> None:
    vendor, clock = Vendor(), Clock()
    b = batcher(vendor, clock, n=1)
    assert (await b.slot(spec(0))).file_name == "p0.jpg"
    assert vendor.calls == [["p0.jpg"]] and b.state == "off (N=1)"


ANSWERS = st.sampled_from(["ok", "ok", "ok", "reversed", "shuffled", "400", "short", "unnamed", "503"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(st.integers(1, 12), min_size=1, max_size=6), answers=st.lists(ANSWERS, max_size=30),
       n=st.integers(1, 6), refuse=st.booleans())
def test_every_request_gets_exactly_one_slot_or_one_error(groups: list[int], answers: list[str], n: int,
                                                           refuse: bool) -> None:
    async def scenario() -> None:
        vendor, clock = Vendor(*answers, refuse_batches=refuse), Clock()
        b = batcher(vendor, clock, n=n)
        tasks: list[asyncio.Task[UploadSlot]] = []
        first = 0
        for size in groups:
            tasks += start(b, range(first, first + size))
            first += size
            await clock.advance(LINGER / 2)
        for _ in range(100):
            if all(t.done() for t in tasks):
                break
            await clock.advance(LINGER)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        slots = [o for o in outcomes if isinstance(o, UploadSlot)]
        assert all(isinstance(o, UploadSlot | InvalidParameters | ServerError) for o in outcomes)
        # each picture its own slot: the one asked for its own file, never another's, never shared
        for i, o in enumerate(outcomes):
            if isinstance(o, UploadSlot):
                assert o.file_id.split("-", 1)[1] == f"p{i}.jpg"
        assert len({s.file_id for s in slots}) == len(slots)
        asked = [name for call in vendor.calls for name in call]
        assert set(asked) >= {f"p{i}.jpg" for i in range(first)}
        if b.refused is None:  # no fallback: each picture was carried by exactly one call
            assert sorted(asked) == sorted(f"p{i}.jpg" for i in range(first))
        await b.aclose()

    asyncio.run(scenario())


NAMES = st.sampled_from(["a.jpg", "b.jpg", "c.jpg", "A.jpg", "b.JPG"])


@st.composite
def hostile_answers(draw: st.DrawFn) -> tuple[list[str], list[str | None]]:
    """Names asked (repeats: the same picture twice in one batch) and the names a vendor answers: a shuffle of
    them, then maybe a slot dropped, added, unnamed, or renamed (to another asked name, or one differing in case)."""
    asked = draw(st.lists(NAMES, min_size=1, max_size=6))
    answered: list[str | None] = list(draw(st.permutations(asked)))
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.sampled_from(["drop", "add", "unnamed", "rename"]))
        if how == "drop" and answered:
            answered.pop(draw(st.integers(0, len(answered) - 1)))
        elif how == "add":
            answered.insert(draw(st.integers(0, len(answered))), draw(st.one_of(st.none(), NAMES)))
        elif how in ("unnamed", "rename") and answered:
            answered[draw(st.integers(0, len(answered) - 1))] = None if how == "unnamed" else draw(NAMES)
    return asked, answered


@settings(max_examples=300, deadline=None)
@given(hostile_answers())
def test_an_accepted_answer_gives_each_picture_a_slot_for_its_own_name_once(
        case: tuple[list[str], list[str | None]]) -> None:
    """Whatever the vendor answers: either the batch is refused (one file per request follows), or every picture
    gets a slot answered for its own file name (a name is a content hash: its own bytes), no slot twice, and
    an unnamed slot only when one file was asked."""
    from backdrop.pipeline.batching import by_file_name, refusal_reason

    asked, answered = case
    specs: list[FileSpec] = [{"content_type": "image/jpeg", "file_name": n, "file_size": 1} for n in asked]
    slots = [UploadSlot(file_id=f"id{i}", url="https://s.example/put", method="PUT", headers={}, file_name=n)
             for i, n in enumerate(answered)]
    if refusal_reason(specs, slots) is not None:
        return
    got = by_file_name(specs, slots)
    assert len(got) == len(asked) and len({s.file_id for s in got}) == len(got)
    for name, slot in zip(asked, got, strict=True):
        assert slot.file_name == name or (slot.file_name is None and len(asked) == 1)
