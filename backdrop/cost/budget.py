"""The budget: the period holding today (month, week or day), the units used in it so far, the linear
projection to its end, and whether either has reached the alarm threshold."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from backdrop.cost.rollup import day_start, load_attempts
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger

__all__ = ["BudgetPeriod", "BudgetStatus", "budget_status", "budget_window"]

BudgetPeriod = Literal["month", "week", "day"]


def budget_window(today: date, period: BudgetPeriod) -> tuple[date, date]:
    """The budget period holding `today`: `[start, end)` (weeks start on Monday)."""
    if period == "day":
        return today, today + timedelta(days=1)
    if period == "week":
        start = today - timedelta(days=today.weekday())
        return start, start + timedelta(days=7)
    start = today.replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


@dataclass(frozen=True)
class BudgetStatus:
    period: BudgetPeriod
    start: date
    end: date
    budget_units: int
    used_units: int
    days_elapsed: int
    days_total: int
    projected_units: float
    warn_at: float

    def _of_budget(self, units: float) -> float:
        return units / self.budget_units if self.budget_units else float(units > 0)

    @property
    def share(self) -> float:
        return self._of_budget(self.used_units)

    @property
    def projected_share(self) -> float:
        return self._of_budget(self.projected_units)

    @property
    def alert(self) -> bool:
        """The share used, or the share projected at the period's end, has reached the threshold."""
        return self.share >= self.warn_at or self.projected_share >= self.warn_at

    def message(self) -> str:
        return (f"{self.used_units} of {self.budget_units} units used this {self.period} ({self.share:.0%}); "
                f"projected {self.projected_units:.0f} units ({self.projected_share:.0%}) by {self.end}; "
                f"alarm at {self.warn_at:.0%}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "start": self.start.isoformat(), "end": self.end.isoformat(),
                "share": round(self.share, 4), "projected_share": round(self.projected_share, 4),
                "alert": self.alert}


def budget_status(ledger: Ledger, settings: BackdropSettings, environments: Collection[str] | None,
                  now: datetime) -> BudgetStatus | None:
    """The budget period holding `now` (UTC) so far, or None when no budget is set."""
    if settings.budget_units is None:
        return None
    today = now.astimezone(UTC).date()
    start, end = budget_window(today, settings.budget_period)
    used = load_attempts(ledger, day_start(start), day_start(end), environments)
    used_units = int(used.loc[used["charged"], "units"].sum())
    elapsed, total = (today - start).days + 1, (end - start).days  # today counts as an elapsed day
    return BudgetStatus(period=settings.budget_period, start=start, end=end,
                        budget_units=settings.budget_units, used_units=used_units, days_elapsed=elapsed,
                        days_total=total, projected_units=round(used_units / elapsed * total, 2),
                        warn_at=settings.budget_warn_at)
