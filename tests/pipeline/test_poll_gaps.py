"""No running task is left longer without a poll than allowed: `poll_max_gap_seconds`, shortened by a vendor's
`polling_interval`, with a quarter kept for the rate limiter; in poll mode and in webhook mode. A fake clock stands in
for time, and a fake client for the vendor (unit tests of `steps.wait_for_task` and `polling.PollPlanner`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backdrop.client import TaskStatus
from backdrop.pipeline.polling import WAIT_SHARE, PollPlanner
from backdrop.pipeline.steps import wait_for_task
from backdrop.settings import BackdropSettings


@dataclass
class Clock:
    t: float = 0.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Vendor:
    """A task that ends at `done_at`; every answer carries `interval` as polling_interval (None: none)."""

    clock: Clock
    done_at: float
    interval: float | None = None
    polls: list[float] = field(default_factory=list)
    due_ins: list[float] = field(default_factory=list)

    async def get_task(self, task_id: str, due_in: float = 0.0) -> TaskStatus:
        self.polls.append(self.clock.t)
        self.due_ins.append(due_in)
        status = "success" if self.clock.t >= self.done_at else "running"
        return TaskStatus(task_id=task_id, status=status, result_url="https://r/x" if status == "success" else None,
                          polling_interval=self.interval)


@dataclass
class Hooks:
    """A webhook receiver whose delivery lands at `delivered_at` (None: never)."""

    clock: Clock
    delivered_at: float | None
    waits: list[float] = field(default_factory=list)

    async def wait(self, task_id: str, timeout: float) -> str | None:  # noqa: ASYNC109 - the receiver's signature
        self.waits.append(timeout)
        if self.delivered_at is not None and self.delivered_at <= self.clock.t + timeout:
            self.clock.t = max(self.clock.t, self.delivered_at)  # one delivered before the wait began is kept
            return "success"
        self.clock.t += timeout
        return None


def _gaps(polls: list[float]) -> list[float]:
    times = [0.0, *polls]  # the wait starts at create
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def _run(cfg: BackdropSettings, vendor: Vendor, planner: PollPlanner, hooks: Hooks | None = None) -> Any:
    return asyncio.run(wait_for_task(vendor, "t", cfg, sleep=vendor.clock.sleep, now=vendor.clock,  # type: ignore[arg-type]
                                     planner=planner, receiver=hooks))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    duration=st.floats(0.0, 300.0),
    max_gap=st.floats(2.0, 120.0),
    interval=st.one_of(st.none(), st.floats(1.0, 60.0)),
    step=st.floats(0.05, 60.0),
    first=st.floats(0.0, 200.0),
    cap=st.floats(0.5, 200.0),
    strategy=st.sampled_from(["adaptive", "fixed"]),
    webhook=st.sampled_from([None, "never", "on_time"]),
    resume=st.one_of(st.none(), st.just(0.0), st.floats(0.0, 200.0)),
    handover=st.one_of(st.just(0.0), st.floats(0.0, 30.0)),
)
def test_no_gap_between_polls_is_longer_than_allowed(duration: float, max_gap: float, interval: float | None,
                                                     step: float, first: float, cap: float, strategy: str,
                                                     webhook: str | None, resume: float | None,
                                                     handover: float) -> None:
    """Every wait, the first, the second (`after_first`) and later ones, in poll and webhook mode and when resuming
    (`first_delay` given: 0 polls at once), with any vendor `polling_interval` and poll_interval (`step`): never
    past the allowed silence, and when polling, never sooner than the settings' smallest step (no poll storm). A
    fresh create's wait may start `handover` seconds after the create was answered (the step between them took
    that long): the first gap still counts from the create."""
    cfg = BackdropSettings(poll_max_gap_seconds=max_gap, poll_first_seconds=first, poll_max_interval_seconds=cap,
                           poll_interval_seconds=step, poll_strategy=strategy, poll_deadline_seconds=10_000)
    handover = handover if resume is None else 0.0
    clock = Clock(handover)
    vendor = Vendor(clock, done_at=duration, interval=interval)
    planner = PollPlanner(cfg)
    planner.observe_polling_interval(interval)  # the create's answer carried it too
    hooks = None if webhook is None else Hooks(clock, duration if webhook == "on_time" else None)
    result = asyncio.run(wait_for_task(vendor, "t", cfg, sleep=clock.sleep, now=clock,  # type: ignore[arg-type]
                                       first_delay=resume, planner=planner, receiver=hooks,  # type: ignore[arg-type]
                                       since_created=handover))
    allowed = WAIT_SHARE * (min(max_gap, interval) if interval else max_gap)
    gaps = _gaps(vendor.polls)
    assert max(gaps) <= max(allowed, handover) + 1e-9  # a handover longer than allowed: polled at once
    assert result.status.status == "success" and vendor.polls[-1] >= duration
    if hooks is None or resume is not None:  # polling: no storm after the first wait
        assert all(g >= min(step, cap, allowed) - 1e-9 for g in gaps[1:])
        if resume is None and strategy == "adaptive" and not hooks:  # the first poll at the planned wait from create
            assert gaps[0] == pytest.approx(max(handover, min(first, allowed)))
        # each poll says how much earlier than the gap requires it is: the limiter keeps room for the required one
        for gap, due_in in zip(gaps, vendor.due_ins, strict=True):
            assert due_in == pytest.approx(max(0.0, allowed - gap), abs=1e-6)
    elif webhook == "on_time":  # a delivery is followed by exactly one poll
        assert vendor.polls[-1] == max(duration, handover)


def test_the_default_leaves_at_most_15_of_20_seconds_and_the_webhook_wait_is_inside_it() -> None:
    planner = PollPlanner(BackdropSettings())
    assert planner.longest_wait() == 15.0 == planner.webhook_wait()  # not the 60 s safety poll of old
    assert planner.next_delay(14.0) == 15.0 and planner.first_delay() == 8.0


def test_a_vendor_polling_interval_shortens_every_wait_and_nonsense_is_ignored() -> None:
    planner = PollPlanner(BackdropSettings(poll_first_seconds=8.0))
    planner.observe_polling_interval(None)
    assert planner.vendor_interval is None and planner.longest_wait() == 15.0
    planner.observe_polling_interval(6.0)
    planner.observe_polling_interval(10.0)  # a longer one later does not loosen it
    assert planner.vendor_interval == 6.0
    assert planner.longest_wait() == pytest.approx(4.5)
    assert planner.first_delay() == pytest.approx(4.5) and planner.next_delay(4.0) == pytest.approx(4.5)
    assert planner.webhook_wait() == pytest.approx(4.5)


def test_a_polling_interval_first_seen_on_a_poll_answer_applies_to_the_next_wait() -> None:
    cfg = BackdropSettings(poll_first_seconds=8.0, poll_max_interval_seconds=30.0)
    clock = Clock()
    vendor = Vendor(clock, done_at=40.0, interval=3.0)
    _run(cfg, vendor, PollPlanner(cfg))
    gaps = _gaps(vendor.polls)
    assert gaps[0] == 8.0  # before any answer said otherwise
    assert all(g <= 2.25 + 1e-9 for g in gaps[1:])  # 3/4 of 3 s from then on


def test_webhook_mode_without_a_delivery_polls_every_allowed_wait() -> None:
    cfg = BackdropSettings(poll_max_gap_seconds=20.0, webhook_safety_poll_seconds=60.0)
    clock = Clock()
    vendor = Vendor(clock, done_at=50.0)
    hooks = Hooks(clock, delivered_at=None)
    result = _run(cfg, vendor, PollPlanner(cfg), hooks)
    assert vendor.polls == [15.0, 30.0, 45.0, 60.0]
    assert hooks.waits == [15.0] * 4 and result.polls == 4
    assert result.gap_seconds == 15.0  # the last silence, from the poll that still saw it running


def test_webhook_mode_with_a_delivery_polls_once_right_after_it() -> None:
    cfg = BackdropSettings()
    clock = Clock()
    vendor = Vendor(clock, done_at=9.5)
    result = _run(cfg, vendor, PollPlanner(cfg), Hooks(clock, delivered_at=9.5))
    assert vendor.polls == [9.5] and result.polls == 1 and result.gap_seconds == 0.0
    # and it books at once: the limiter holds back only polls that may find their task running (`due_in` > 0)
    assert vendor.due_ins == [0.0]


def test_a_run_of_vendor_like_tasks_costs_few_polls_and_finished_tasks_wait_little() -> None:
    """4,000 tasks of vendor-like durations (lognormal, median 10 s, sigma 0.4) through one run's planner, each
    waited for by the real `wait_for_task` on a fake clock: the planner learns the first poll, and the schedule
    after it must keep both costs low: polls (each one a request that could have made a picture) and the time a
    finished task waits for the poll that finds it (latency, and the vendor's result URLs expire). With the
    default 20 s gap the first poll cannot wait past 15 s, when about 15% of tasks still run: 1.155 polls a task
    is the floor. The old schedule waited the full 15 s again before the second poll (p95 wait 13.5 s)."""
    import random

    cfg = BackdropSettings()
    planner, rng = PollPlanner(cfg), random.Random(5)
    polls, waits = [], []
    for _ in range(4000):
        clock = Clock()
        vendor = Vendor(clock, done_at=rng.lognormvariate(2.3026, 0.4))
        result = _run(cfg, vendor, planner)
        polls.append(result.polls)
        waits.append(vendor.polls[-1] - vendor.done_at)
        assert max(_gaps(vendor.polls)) <= 15.0 + 1e-9
    settled, tail = polls[1000:], sorted(waits[1000:])  # after the planner has learned
    assert 1.15 <= sum(settled) / len(settled) <= 1.21
    assert tail[int(0.95 * len(tail))] <= 11.0
    assert tail[len(tail) // 2] <= 7.0


@dataclass
class HeldBack(Vendor):
    """A vendor whose polls the rate limiter holds back `held` seconds before they leave (an early poll waits while
    new pictures do)."""

    held: float = 0.0

    async def get_task(self, task_id: str, due_in: float = 0.0) -> TaskStatus:
        self.clock.t += self.held
        return await super().get_task(task_id, due_in)


@pytest.mark.parametrize(("held", "done_at", "learned"),
                         [(0.0, 10.0, True), (1.0, 10.0, True), (7.0, 10.0, False), (7.0, 20.0, True)])
def test_a_first_poll_the_limiter_held_back_teaches_the_planner_only_that_the_task_ran_past_it(
        held: float, done_at: float, learned: bool) -> None:
    """Planned at 8 s: a poll that left on time says "running at 8 s" of a task done at 10 s (learned); one held
    back 7 s says "done at 15 s", which is not "done at 8 s", and taught the planner to poll ever sooner (not
    learned); held back 7 s and finding a task done at 20 s still running, it says it ran past 8 s (learned)."""
    cfg = BackdropSettings(poll_first_seconds=8.0)
    planner = PollPlanner(cfg)
    vendor = HeldBack(Clock(), done_at=done_at, held=held)
    _run(cfg, vendor, planner)
    assert planner.first_polls == int(learned)
    assert (planner.first_delay() > 8.0) == learned  # it found the task running: the next first poll comes later
