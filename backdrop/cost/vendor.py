"""The vendor's side of the cost report: its credit history's charges, matched with the ledger's by task id
both ways (units it charged that no ledger row knows, ledger charges it does not show), and its units per day.

Not to be confused with `backdrop.pipeline.reconcile`, which settles lost creates during a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from backdrop.client import CreditHistoryEntry
from backdrop.cost.rollup import or_none

__all__ = ["PERIOD_EDGE_SLACK", "Reconciliation", "match_vendor_charges", "vendor_units_per_day"]

#: how far beyond the period's edges the credit history is read: a charge may be stamped a little before or
#: after the ledger's time (clocks differ) and must still find its ledger row
PERIOD_EDGE_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class Reconciliation:
    vendor_units: float
    ledger_units: int
    #: charges in the vendor's history (in the period) whose task id no ledger row knows
    unknown_to_ledger: list[dict[str, Any]] = field(default_factory=list)
    #: ledger charges (in the period) whose task id the vendor's history does not show
    missing_at_vendor: list[dict[str, Any]] = field(default_factory=list)

    @property
    def difference(self) -> float:
        return self.vendor_units - self.ledger_units

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "difference": self.difference}


def _vendor_charges(history: Sequence[CreditHistoryEntry]) -> pd.DataFrame:
    rows = [{"history_id": e.id, "task_id": e.target_id, "units": -e.units, "timestamp": e.timestamp}
            for e in history if e.units < 0]
    df = pd.DataFrame(rows, columns=["history_id", "task_id", "units", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def match_vendor_charges(attempts: pd.DataFrame, history: Sequence[CreditHistoryEntry],
                         known_task_ids: set[str], since: datetime, until: datetime) -> Reconciliation:
    """Match the period's ledger charges with the vendor's charges by task id, both ways.

    `history` should reach `PERIOD_EDGE_SLACK` beyond the period on both sides, so that a charge stamped just
    across a boundary still matches its ledger row; only charges inside the period count as unknown.
    """
    vendor = _vendor_charges(history)
    inside = vendor[(vendor["timestamp"] >= since) & (vendor["timestamp"] < until)]
    unknown = inside[~inside["task_id"].isin(known_task_ids) | inside["task_id"].isna()]
    charged = attempts[attempts["charged"]]
    missing = charged[~charged["task_id"].isin(set(vendor["task_id"].dropna())) | charged["task_id"].isna()]
    return Reconciliation(
        vendor_units=float(inside["units"].sum()),
        ledger_units=int(charged["units"].sum()),
        unknown_to_ledger=[{"task_id": or_none(r.task_id), "units": float(r.units),
                            "time": r.timestamp.isoformat(), "history_id": r.history_id}
                           for r in unknown.itertuples()],
        missing_at_vendor=[{"task_id": or_none(r.task_id), "units": int(r.units),
                            "run_id": r.charged_run_id, "deployment": r.deployment,
                            "row_id": or_none(r.row_id), "created_at": r.created_at.isoformat()}
                           for r in missing.itertuples()],
    )


def vendor_units_per_day(history: Sequence[CreditHistoryEntry], since: datetime, until: datetime,
                         days: pd.Index) -> pd.Series:
    """The units the vendor charged in `[since, until)`, per UTC day of `days` (0.0 for a day without)."""
    vendor = _vendor_charges(history)
    vendor = vendor[(vendor["timestamp"] >= since) & (vendor["timestamp"] < until)]
    per_day = vendor.groupby(vendor["timestamp"].dt.date)["units"].sum()
    return per_day.reindex(days, fill_value=0.0).astype(float)
