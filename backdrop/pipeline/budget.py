"""The unit budget of one run (`max_units`): reserved before each create, settled after, refunded when the
credit history proves a create counted as spent was never made."""

from __future__ import annotations

import asyncio

__all__ = ["Budget"]


class Budget:
    """`max_units` for one run: units are reserved before each create, so concurrency cannot overshoot, and a
    create that may still be charged (its answer was lost, its task's end was not seen) counts as spent."""

    def __init__(self, max_units: int | None, units_per_task: int) -> None:
        self.max_units = max_units
        self.units_per_task = units_per_task
        self.reserved = 0
        self.spent = 0
        self._lock = asyncio.Lock()

    async def reserve(self) -> bool:
        async with self._lock:
            if self.max_units is not None:
                if self.spent + self.reserved + self.units_per_task > self.max_units:
                    return False
            self.reserved += self.units_per_task
            return True

    async def settle(self, *, spent: bool) -> None:
        """End a reservation: `spent` when the vendor charged it or still may."""
        async with self._lock:
            self.reserved -= self.units_per_task
            if spent:
                self.spent += self.units_per_task

    async def refund(self) -> None:
        """A create counted as spent turned out never to have been made (the credit history says so)."""
        async with self._lock:
            self.spent = max(0, self.spent - self.units_per_task)
