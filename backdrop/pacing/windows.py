"""The arithmetic of the vendor's request windows: which `(count, seconds)` windows a key and an address keep,
with their margins, how far ahead a request that can wait may book.

Plain functions of the settings, shared by the in-process limiter (`memory`) and the database one (`database`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

from backdrop.settings import POLL_WAIT_SHARE, BackdropSettings

__all__ = ["JITTER_MARGIN_SECONDS", "SHORT_WINDOW_MIN_SLACK_SECONDS", "SHORT_WINDOW_SLACK",
           "checked_windows", "key_windows", "poll_every", "polls_fit", "vendor_windows", "wait_horizon"]


def checked_windows(windows: Sequence[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    """The `(count, seconds)` windows as a tuple; ValueError unless there is one and each is sound."""
    if not windows:
        raise ValueError("at least one (count, seconds) window is needed")
    for count, seconds in windows:
        if count < 1 or seconds <= 0:
            raise ValueError(f"bad window ({count}, {seconds}): need count >= 1, seconds > 0")
    return tuple((int(n), float(s)) for n, s in windows)


def wait_horizon(windows: Sequence[tuple[int, float]]) -> float:
    """How far ahead requests that `can_wait` may book: two steady-state slots (2 x 1.2 s at the vendor).

    Polls book at once; uploads and creates join the queue only when it is shorter than this, so a poll
    never waits behind a long line of creates and no task is left unpolled near the polling window.
    """
    return 2 * max(seconds / count for count, seconds in windows)


#: Added to every window: the server counts arrivals, and network jitter can bring two requests
#: sent exactly one window apart closer together than that.
JITTER_MARGIN_SECONDS = 0.05


#: The short (per-second) window is widened by this share, and by at least SHORT_WINDOW_MIN_SLACK_SECONDS:
#: slots are booked ahead, and one whose request leaves late (a busy event loop stalls for tens of
#: milliseconds, whatever the window) must not bring its successor inside the server's window. It costs no
#: throughput: the long window (250 per 300 s), not the short one, sets the sustained rate.
SHORT_WINDOW_SLACK = 0.2
SHORT_WINDOW_MIN_SLACK_SECONDS = 0.1


def _margin(seconds: float) -> float:
    """The long window's margin, for clock skew between hosts (the settling of slots covers lateness)."""
    return JITTER_MARGIN_SECONDS * min(1.0, seconds)


def key_windows(settings: BackdropSettings) -> tuple[tuple[int, float], ...]:
    """The key's windows: the vendor's (`vendor_windows`), and the burst the settings ask for."""
    windows = vendor_windows(settings)
    if settings.rate_limit_burst is not None and settings.rate_limit_burst < settings.rate_limit_requests:
        # `burst` requests per the time the window's average rate takes to allow them
        n = settings.rate_limit_burst
        windows += ((n, n * settings.rate_limit_window_seconds / settings.rate_limit_requests),)
    return windows


def vendor_windows(settings: BackdropSettings) -> tuple[tuple[int, float], ...]:
    """The vendor's windows with their margins; an egress budget keeps these (a burst is one key's choice)."""
    per_second = settings.rate_limit_per_second
    short = settings.rate_limit_short_window_seconds
    # r per second over a short window w becomes floor(r*w) requests per floor(r*w)/r seconds
    # (2.5/s over 1 s -> 2 per 0.8 s; a sandbox 20x faster counts 5 per 0.05 s, not 100 per 1 s).
    burst = max(1, math.floor(per_second * short))
    burst_seconds = burst / per_second
    windows: tuple[tuple[int, float], ...] = (
        (settings.rate_limit_requests,
         settings.rate_limit_window_seconds + _margin(settings.rate_limit_window_seconds)),
        (burst, burst_seconds + max(SHORT_WINDOW_SLACK * burst_seconds, SHORT_WINDOW_MIN_SLACK_SECONDS)),
    )
    return windows



def poll_every(settings: BackdropSettings) -> float:
    """How often each running task must be polled (the longest planned wait the poll gap allows): what the limiter
    keeps room for. Polls a run makes more often than that (`poll_max_interval_seconds`, the fixed strategy) are its
    choice and wait their turn; they are not kept room for."""
    return POLL_WAIT_SHARE * settings.poll_max_gap_seconds


def polls_fit(windows: Sequence[tuple[int, float]], times: Sequence[float], at: float, owed: int,
              every: float) -> bool:
    """Whether `owed` running tasks can each be polled every `every` seconds from `at` on, however long they run,
    beside the slots at `times` (sorted; the one booked at `at` among them) in every window longer than `every`.

    A window `(count, seconds)` has `count - held` slots free at `at` (`held`: the slots after `at - seconds`, those
    booked ahead included), and one more each time a held slot leaves the window. The tasks' polls are due at the
    latest now, `every` later, and so on: the k-th round (k = 1, 2, ...) needs `owed * k` slots by
    `at + (k - 1) * every`, when the slots held before `at - seconds + (k - 1) * every` have left. A batch that spends
    the window's slots on new pictures in its first minute then has nothing left for their polls until the window
    slides (minutes at the vendor): this is what the limiter checks before it books a picture's upload or create.
    A window shorter than `every` refills within a round: it is kept if the round's refills alone poll every task
    (the per-second window: 5 a second give 75 polls in a 15 s round), else it counts as one round. No task is kept
    room for polls more often than every two of a window's steady-state slots (`seconds / count`): a gap set
    shorter than that could not be kept for even one task, and a batch must still move.
    """
    if owed <= 0:
        return True
    for count, seconds in windows:
        round_ = max(every, 2 * seconds / count)
        first = bisect_right(times, at - seconds)  # the first slot still held at `at`
        free = count - (len(times) - first)
        if seconds < round_:
            if owed <= count * (math.floor(round_ / seconds) - 1):
                continue  # the window refills enough within one round, whatever it holds now
            if owed > free:
                return False
            continue
        for k in range(1, math.ceil(seconds / round_) + 1):
            freed = bisect_right(times, at - seconds + (k - 1) * round_) - first
            if owed * k > free + freed:
                return False
    return True
