"""Rolling-window rate limits, as the vendor documents them: N per window and M per second."""

from __future__ import annotations

import threading
import time
from collections import deque


class Bucket:
    """Timestamps (monotonic) of the accepted requests of one key or one client address."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def _count_since(self, since: float) -> int:
        # deque is time-ordered: count from the right until older than `since`
        n = 0
        for t in reversed(self._times):
            if t < since:
                break
            n += 1
        return n

    def would_allow(self, *, limit: int, window_s: float, per_second: int, second_s: float,
                    now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and self._times[0] < now - max(window_s, second_s):
                self._times.popleft()
            return (self._count_since(now - window_s) < limit
                    and self._count_since(now - second_s) < per_second)

    def record(self, now: float | None = None) -> None:
        with self._lock:
            self._times.append(time.monotonic() if now is None else now)

    def clear(self) -> None:
        with self._lock:
            self._times.clear()


def admit(buckets: list[Bucket], *, limit: int, window_s: float, per_second: int,
          second_s: float) -> bool:
    """Check every bucket; if all allow, count the request in each (refusals count nowhere)."""
    now = time.monotonic()
    if not all(b.would_allow(limit=limit, window_s=window_s, per_second=per_second,
                             second_s=second_s, now=now) for b in buckets):
        return False
    for b in buckets:
        b.record(now)
    return True
