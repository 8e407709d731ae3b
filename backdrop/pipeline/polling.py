"""When to poll: every poll that finds `running` spends a request that could have made a picture.

The vendor's sample polls every 2 s: about 5 wasted requests on a 10 s task. Backdrop times each task's first
poll so that a chosen share of tasks (`poll_quantile`, 0.9) is already done by then, learning that point during
the run: each first poll that finds the task done nudges the delay down a little, each that finds it running
nudges it up, until the share done at first poll settles at the quantile (a stochastic-approximation
controller). A task still running is then polled on a backing-off schedule.

Polling late costs latency, not throughput: with enough pictures in flight the rate limit, not the wait, sets
the pace, and the cap on the back-off keeps every task well inside the vendor's polling window.
"""

from __future__ import annotations

import math
import threading

from backdrop.settings import BackdropSettings

__all__ = ["PollPlanner"]

#: learning rate of the controller (log-space step per observation)
_ETA = 0.15


class PollPlanner:
    """Shared by the tasks of one run; safe across threads."""

    def __init__(self, settings: BackdropSettings) -> None:
        self.strategy = settings.poll_strategy
        self.quantile = settings.poll_quantile
        self.interval = settings.poll_interval_seconds
        self.cap = settings.poll_max_interval_seconds
        self._first = settings.poll_first_seconds if self.strategy == "adaptive" else self.interval
        self._lock = threading.Lock()
        self.first_polls = 0
        self.done_at_first = 0

    def first_delay(self) -> float:
        with self._lock:
            return self._first

    def next_delay(self, previous: float) -> float:
        """The wait before the next poll of a task that was still running."""
        if self.strategy == "fixed":
            return self.interval
        with self._lock:
            base = max(self.interval, 0.25 * self._first)
        return min(max(base, previous * 1.5), self.cap)

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
