"""A granted slot of the in-process limiter (`backdrop.pacing.memory`), the constants of its lifetime, and the
count of new work waiting for room that both limiters keep (`Waiting`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["IN_FLIGHT_MAX_SECONDS", "OWED_EXPIRY_ROUNDS", "RECENT_EXTRA", "Slot", "Waiting"]

#: Slots kept beyond the longest window's count, for slots settled out of grant order.
RECENT_EXTRA = 32
#: A slot still unanswered this long after its time is taken as lost and counts from its own time.
IN_FLIGHT_MAX_SECONDS = 120.0
#: A task owed polls and not said running for this many poll rounds (`poll_every`) is no longer counted: its waiter
#: stopped without saying so (a cancelled run, a crash). Eight rounds (2 minutes at the default gap): a waiter sleeps
#: at most one between polls, and a poll that times out twice and backs off takes about four.
OWED_EXPIRY_ROUNDS = 8


class Slot:
    """One granted slot. `at` is when the server may have counted it: its time, moved to `now` while the
    request is in flight (it may arrive any moment), then to the moment its answer came back."""

    __slots__ = ("at", "booked", "open", "sent", "starts_task")

    def __init__(self, at: float) -> None:
        self.at = self.booked = at
        self.open = True
        #: a create's slot: its task counts as owed polls while the create is in flight
        self.starts_task = False
        #: False while an `acquire` waits for its slot: such a slot does not hold back the requests that
        #: confirm theirs before it (`SlidingWindowLimiter._confirm`)
        self.sent = True

    def still_open(self, now: float) -> bool:
        """Count an unanswered request from now; False once it is no longer taken as in flight."""
        if not self.open or now - self.booked >= IN_FLIGHT_MAX_SECONDS:
            return False
        self.at = max(self.at, now)
        return True

    def settle(self, now: float) -> None:
        self.at = max(self.at, now)
        self.open = False


class Waiting:
    """How many acquisitions of new work that does not defer (creates) wait for room in this process, for those
    that do (upload slot calls): a deferred request books only while none waits. A slot call that waits so is not
    lost time: its pictures could not create before those already waiting, and its batcher gathers more pictures
    meanwhile (fewer slot calls a picture). Thread-safe: Prefect may run tasks on several threads."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def joined(self, counts: bool) -> Iterator[None]:
        """Count this acquisition as waiting while the block runs, if it `counts`."""
        if not counts:
            yield
            return
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1

    def busy(self) -> bool:
        """Whether any such acquisition waits now."""
        return self._count > 0
