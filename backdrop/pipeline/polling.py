"""When to poll: every poll that finds `running` spends a request that could have made a picture.

The vendor's sample polls every 2 s: about 5 wasted requests on a 10 s task. Backdrop times each task's first
poll so that a chosen share of tasks (`poll_quantile`, 0.9) is already done by then, learning that point during
the run: each first poll that finds the task done nudges the delay down a little, each that finds it running
nudges it up, until the share done at first poll settles at the quantile (a stochastic-approximation
controller). A task still running then is usually close to its end (it already ran longer than most): its second
poll comes after half the first wait, then the waits grow by half each time. At the sandbox's durations (lognormal,
median 10 s, sigma 0.4) and a 15 s first wait, that costs 0.02 polls a picture more than waiting the full 15 s
again, and cuts the 95th percentile of the time a finished task waits for its poll from 13.5 s to 10 s. Such an
early poll (`due_in`) takes only the limiter's spare room, and while new work waits it waits until it is due
(`backdrop.pacing.cells.Waiting`): in a batch the limiter holds back, such polls are not made.

Polling late costs latency, not throughput: with enough pictures in flight the rate limit, not the wait, sets
the pace. Polling too late loses the task: the vendor times out a task not polled within its polling window (length
unpublished; InvalidTaskId afterwards, the units maybe charged). So no wait, the first, a back-off step or a webhook
mode's wait for the delivery, is longer than `longest_wait()`: three quarters of `poll_max_gap_seconds` (20 s) or of
the shortest `polling_interval` the vendor has sent in this run, the last quarter kept for the rate limiter and the
network.
"""

from __future__ import annotations

import math
import threading

from backdrop.settings import POLL_WAIT_SHARE, BackdropSettings

__all__ = ["PollPlanner"]

#: learning rate of the controller (log-space step per observation): small enough that a first poll held at the
#: gap's limit (tasks slower than it allows) stays near it instead of bouncing down after a few quick tasks
_ETA = 0.05
#: share of the allowed silence a planned wait may use; the rest is for the rate limiter's queue and the network (the
#: limiter keeps room for a poll of every running task this often: `backdrop.pacing.windows.poll_every`)
WAIT_SHARE = POLL_WAIT_SHARE


class PollPlanner:
    """Shared by the tasks of one run; safe across threads."""

    def __init__(self, settings: BackdropSettings) -> None:
        self.strategy = settings.poll_strategy
        self.quantile = settings.poll_quantile
        self.interval = settings.poll_interval_seconds
        self.cap = settings.poll_max_interval_seconds
        self.max_gap = settings.poll_max_gap_seconds
        self.safety_poll = settings.webhook_safety_poll_seconds
        #: the shortest `polling_interval` the vendor sent in this run (None: it sent none)
        self.vendor_interval: float | None = None
        self._first = settings.poll_first_seconds if self.strategy == "adaptive" else self.interval
        self._lock = threading.Lock()
        self.first_polls = 0
        self.done_at_first = 0

    def longest_wait(self) -> float:
        """The longest any planned wait between a task's create (or last poll) and its next poll may be."""
        with self._lock:
            gap = min(self.max_gap, self.vendor_interval) if self.vendor_interval else self.max_gap
        return WAIT_SHARE * gap

    def first_delay(self) -> float:
        with self._lock:
            first = self._first
        return min(first, self.longest_wait())

    def after_first(self, first: float) -> float:
        """The wait before the second poll of a task its first poll (after waiting `first`) found running."""
        if self.strategy == "fixed":
            return min(self.interval, self.longest_wait())
        return min(max(self.interval, 0.5 * first), self.cap, self.longest_wait())

    def next_delay(self, previous: float) -> float:
        """The wait before a later poll of a task that was still running."""
        if self.strategy == "fixed":
            return min(self.interval, self.longest_wait())
        with self._lock:
            base = max(self.interval, 0.25 * self._first)
        return min(max(base, previous * 1.5), self.cap, self.longest_wait())

    def webhook_wait(self) -> float:
        """With webhooks: how long to wait for a task's delivery before polling it anyway."""
        return min(self.safety_poll, self.longest_wait())

    def observe_polling_interval(self, seconds: float | None) -> None:
        """The vendor's `polling_interval` from a create or poll answer (parsed, sane, or None): the shortest seen
        bounds every wait from now on."""
        if seconds is None:
            return
        with self._lock:
            self.vendor_interval = seconds if self.vendor_interval is None else min(self.vendor_interval, seconds)

    def observe_first_poll(self, done: bool) -> None:
        """Feed back whether a task's first poll (made at `first_delay()`) found it finished."""
        if self.strategy == "fixed":
            return
        with self._lock:
            self.first_polls += 1
            self.done_at_first += int(done)
            step = _ETA * (self.quantile - (1.0 if done else 0.0))
            # done: step < 0 -> poll earlier next time; running: step > 0 -> poll later
            self._first = min(max(self._first * math.exp(step), 0.05 * self.interval), self.cap)
