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
    """Requests of this process waiting to book, by urgency: one books only while none more urgent waits. Creates
    first (their pictures have their slots), then upload slot calls (`defer`: the longer one waits, the more pictures
    it carries), then polls made before the gap requires them (`due_in`): while new work waits, such a poll waits
    until it is due (a slot spent on a task that may still be running could have made a picture). A poll that is due
    waits for nobody, and nothing waits for the more urgent longer than `PATIENCE_SLOTS` steady-state slots (another
    batch's creates on the key in this process never starve this one's uploads). Thread-safe: Prefect may run tasks
    on several threads."""

    CREATE, SLOT_CALL, EARLY_POLL = 0, 1, 2
    #: 30 s at the vendor's 250 per 300 s: time for a batch's creates to go first (ten take 12 s at that pace)
    PATIENCE_SLOTS = 25

    def __init__(self) -> None:
        self._counts = [0, 0, 0]
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def joined(self, level: int | None) -> Iterator[None]:
        """Count this request as waiting at `level` while the block runs (None: not at all)."""
        if level is None:
            yield
            return
        with self._lock:
            self._counts[level] += 1
        try:
            yield
        finally:
            with self._lock:
                self._counts[level] -= 1

    def holds(self, level: int | None, waited: float, horizon: float) -> bool:
        """Whether a request at `level` that has `waited` so far lets a more urgent one go first (`horizon`: the
        limiter's `wait_horizon`, two steady-state slots)."""
        return level is not None and waited < self.PATIENCE_SLOTS * horizon / 2 and any(self._counts[:level])

    @classmethod
    def level(cls, *, can_wait: bool, defer: bool, early: bool) -> int | None:
        """The urgency of an `acquire`: new work (a slot call if `defer`), or a poll before it is due."""
        if can_wait:
            return cls.SLOT_CALL if defer else cls.CREATE
        return cls.EARLY_POLL if early else None
