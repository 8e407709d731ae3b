"""The database limiter's queries: the count-th latest slot of each window (`kth_query`), and the tasks a key (or an
egress address) owes polls, as rows of `backdrop_polls_owed` (`OwedRows`), written as a create's or a poll's slot is
settled, so every process sharing the key counts them.

`ref` is the vendor's task id (a digest if too long), or `slot:<row id>` for a create (or slot call) in flight, booked
with its slot and deleted when the slot is settled; `seen_at` is when the task was last said running. Rows not seen
for `OWED_EXPIRY_ROUNDS` poll rounds no longer count, and are deleted (a waiter that stopped without saying so).
Every statement runs inside the caller's transaction, under the budget's locks (`backdrop.pacing.database`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BindParameter, Integer, Select, bindparam, delete, func, insert, literal_column, select, update

from backdrop.pacing.memory import OWED_EXPIRY_ROUNDS
from backdrop.pacing.slots import owed, slots
from backdrop.pacing.windows import polls_fit

__all__ = ["OwedRows", "kth_query"]


class OwedRows:
    """The statements on `backdrop_polls_owed`, and the room check that reads them."""

    def __init__(self) -> None:
        key: BindParameter[str] = bindparam("key")
        ref: BindParameter[str] = bindparam("task_ref")
        self._count = select(func.count()).select_from(owed).where(owed.c.key_id == key,
                                                                   owed.c.seen_at > bindparam("alive"))
        self._stale = delete(owed).where(owed.c.key_id == key, owed.c.seen_at <= bindparam("alive"))
        self._held = select(slots.c.slot_at).where(slots.c.key_id == key, slots.c.slot_at > bindparam("held"))
        self._again = update(owed).where(owed.c.key_id == key, owed.c.ref == ref).values(seen_at=bindparam("at"))
        self._new = insert(owed)
        self._paid = delete(owed).where(owed.c.key_id == key, owed.c.ref == ref)

    def room(self, conn: Any, budgets: Sequence[tuple[str, Sequence[tuple[int, float]]]], slot: float, now: float,
             every: float, starts_task: bool) -> bool:
        """Whether new work at `slot` leaves room for the polls every budget `(key, windows)` owes."""
        alive = now - OWED_EXPIRY_ROUNDS * every
        for key, windows in budgets:
            conn.execute(self._stale, {"key": key, "alive": alive})
            count = int(conn.execute(self._count, {"key": key, "alive": alive}).scalar_one()) + int(starts_task)
            if count == 0:
                continue
            held = sorted([*conn.scalars(self._held, {"key": key, "held": slot - max(s for _, s in windows)}), slot])
            if not polls_fit(windows, held, slot, count, every):
                return False
        return True

    def book(self, conn: Any, key: str, row_id: int, now: float) -> None:
        """A create's (or slot call's) task, owed polls while the slot `row_id` is in flight."""
        conn.execute(self._new, {"key_id": key, "ref": _slot_ref(row_id), "seen_at": now})

    def unbook(self, conn: Any, key: str, row_id: int) -> None:
        conn.execute(self._paid, {"key": key, "task_ref": _slot_ref(row_id)})

    def note(self, conn: Any, key: str, at: float, *, owe: str | None, paid: str | None) -> None:
        """Record under `key` that task `owe` is running (as of `at`) or that task `paid` needs no more polls."""
        if owe is not None:
            task_ref = _task_ref(owe)
            if conn.execute(self._again, {"key": key, "task_ref": task_ref, "at": at}).rowcount == 0:
                conn.execute(self._new, {"key_id": key, "ref": task_ref, "seen_at": at})
        if paid is not None:
            conn.execute(self._paid, {"key": key, "task_ref": _task_ref(paid)})


def _slot_ref(row_id: int) -> str:
    return f"slot:{row_id}"


def _task_ref(ref: str) -> str:
    """A task's row: its id, or a digest of an id too long for the column (never `slot:`-like)."""
    if len(ref) <= 120 and not ref.startswith("slot:"):
        return ref
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def kth_query(windows: Sequence[tuple[int, float]]) -> Select[Any]:
    """Per window, the count-th latest slot of `:key` that can still share a window with a slot taken now; one
    row in one round trip, each an index range scan of at most `count` entries."""
    key: BindParameter[str] = bindparam("key")
    return select(*(
        select(slots.c.slot_at)
        .where(slots.c.key_id == key, slots.c.slot_at > bindparam(f"since{i}"))
        .order_by(slots.c.slot_at.desc())
        # constants, not parameters: PostgreSQL plans a prepared OFFSET $n poorly
        .offset(literal_column(str(count - 1), Integer))
        .limit(literal_column("1", Integer))
        .scalar_subquery()
        for i, (count, _) in enumerate(windows)
    ))
