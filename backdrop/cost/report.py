"""The cost report of one period: `CostReport` (totals, tables, FOCUS rows, vendor match, budget) and
`build_cost_report`, which assembles it from the roll-ups, the vendor match and the budget."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from backdrop.client import CreditHistoryEntry
from backdrop.cost.budget import BudgetStatus, budget_status
from backdrop.cost.rollup import COUNTS, day_start, focus_rows, load_attempts, rollup
from backdrop.cost.vendor import Reconciliation, match_vendor_charges, vendor_units_per_day
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger

__all__ = ["CostReport", "build_cost_report", "days_as_text"]


def days_as_text(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its `day` column (if any) as ISO text, for JSON, CSV and Parquet."""
    return df.astype({"day": str}) if "day" in df else df


#: what a report made without the vendor's history says (no API key: a finance user, a sandbox user)
NOT_CHECKED = ("the vendor's side was not checked (no API key: set BACKDROP_API_KEY or BACKDROP_API_KEY_BLOCK): "
               "units and cost come from Backdrop's ledger alone")


@dataclass
class CostReport:
    """Everything the cost report shows; tables are DataFrames, the rest plain values."""

    since: date
    until: date
    unit_price: float
    currency: str
    generated_at: datetime
    #: the counts (ints), cost and, with a vendor match, the vendor's units
    totals: dict[str, float]
    daily: pd.DataFrame
    runs: pd.DataFrame
    deployments: pd.DataFrame
    focus: pd.DataFrame
    reconciliation: Reconciliation | None = None
    budget: BudgetStatus | None = None
    balance: float | None = None
    #: False when the report was made without the vendor's credit history (`NOT_CHECKED`)
    vendor_checked: bool = True

    def summary(self, files: dict[str, str] | None = None) -> dict[str, Any]:
        """A JSON-safe view (the flow's result, the CLI's --json-output and cost_summary.json)."""
        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = json.loads(days_as_text(df).to_json(orient="records"))
            return rows

        return {
            "since": self.since.isoformat(), "until": self.until.isoformat(), "currency": self.currency,
            "unit_price": self.unit_price, "generated_at": self.generated_at.isoformat(),
            "totals": self.totals, "balance": self.balance, "daily": records(self.daily),
            "runs": records(self.runs), "deployments": records(self.deployments),
            "reconciliation": self.reconciliation.as_dict() if self.reconciliation else None,
            "budget": self.budget.as_dict() if self.budget else None,
            "over_budget": bool(self.budget and self.budget.alert), "files": files or {},
            "vendor_checked": self.vendor_checked, "vendor_note": None if self.vendor_checked else NOT_CHECKED,
        }


def build_cost_report(
    ledger: Ledger,
    since: date,
    until: date,
    settings: BackdropSettings,
    *,
    environments: Collection[str] | None = None,
    history: Sequence[CreditHistoryEntry] | None = None,
    balance: float | None = None,
    now: datetime | None = None,
) -> CostReport:
    """Totals, tables, FOCUS rows, reconciliation (when `history` is given) and budget for `[since, until)`.

    Args:
        ledger: Backdrop's ledger (any SQLAlchemy URL).
        since: First day of the period (UTC).
        until: Day after the last (UTC, excluded).
        settings: Unit price, currency and budget.
        environments: Ledger environment ids to count (one vendor account); None counts every row.
        history: The vendor's credit history from `since - PERIOD_EDGE_SLACK` on; None skips reconciliation.
        balance: The account's balance now, shown as is.
        now: The clock, for the budget's period and projection.
    """
    if until <= since:
        raise ValueError(f"until ({until}) must be after since ({since})")
    now = now or datetime.now(UTC)
    lo, hi = day_start(since), day_start(until)
    price = settings.unit_price
    attempts = load_attempts(ledger, lo, hi, environments)
    days = pd.Index(pd.date_range(since, until - timedelta(days=1), freq="D").date, name="day")
    daily = rollup(attempts, "day", "day", "day", price).reindex(days, fill_value=0)
    runs = rollup(attempts, "run_id", "charged_run_id", "run_id", price)
    deployments = rollup(attempts, "deployment", "deployment", "deployment", price)
    recon = None
    if history is not None:
        recon = match_vendor_charges(attempts, history, ledger.known_task_ids(), lo, hi)
        daily["vendor_units"] = vendor_units_per_day(history, lo, hi, days)
    totals: dict[str, float] = {k: int(daily[k].sum()) for k in COUNTS}
    totals["cost"] = round(totals["units"] * price, 4)
    if recon is not None:
        totals["vendor_units"] = recon.vendor_units
    return CostReport(
        since=since, until=until, unit_price=price, currency=settings.currency, generated_at=now,
        totals=totals, daily=daily.reset_index(),
        runs=runs.sort_values(["units", "created"], ascending=False).reset_index(),
        deployments=deployments.sort_values("units", ascending=False).reset_index(),
        focus=focus_rows(attempts, price, settings.currency), reconciliation=recon,
        budget=budget_status(ledger, settings, environments, now), balance=balance,
        vendor_checked=history is not None,
    )
