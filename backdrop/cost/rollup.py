"""The ledger's attempts over a period as one pandas frame, and what is rolled up from it: counts and cost by
day, run or deployment, and one FOCUS-style row per charge.

An attempt counts on the UTC day it was charged (`charged_at`), or, never charged, on the day it was created;
its create counts for `run_id`, its charge for `charged_run_id`. The rows come from `Ledger.attempts_between`:
this module builds no SQL.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, date, datetime, time
from typing import Any

import pandas as pd

from backdrop.store.ledger import Ledger

__all__ = ["COUNTS", "FOCUS_COLUMNS", "LOCAL", "SERVICE_NAME", "day_start", "focus_rows", "load_attempts",
           "or_none", "rollup"]

SERVICE_NAME = "Perfect Corp AI Photo Background Change"
#: the deployment shown for runs started outside a Prefect deployment
LOCAL = "(local)"
FOCUS_COLUMNS = [
    "ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "EffectiveCost", "BillingCurrency",
    "ConsumedQuantity", "ConsumedUnit", "ResourceId", "ChargeCategory", "ChargeDescription", "ProviderName",
    "ServiceName", "Tags",
]
#: the counted columns of every roll-up, in the order the tables show them
COUNTS = ["created", "succeeded", "failed", "pending", "units"]


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def or_none(value: Any) -> Any:
    """None for a missing cell (pandas reads SQL NULL as NaN or None)."""
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def load_attempts(ledger: Ledger, since: datetime, until: datetime,
                  environments: Collection[str] | None = None) -> pd.DataFrame:
    """Ledger attempts charged (or, never charged, created) in `[since, until)`, with their outcome:
    succeeded, failed or pending; `day` is that day (UTC)."""
    rows = ledger.attempts_between(since, until, environments)
    df = pd.DataFrame(rows, columns=list(Ledger.ATTEMPT_FIELDS))
    df["charged"] = df["charged_run_id"].notna() | (df["units"].fillna(0) > 0)
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)  # the ledger reads back aware UTC
    df["charged_at"] = pd.to_datetime(df["charged_at"], utc=True)
    df["units"] = df["units"].fillna(0).astype(int)
    df["day"] = df["charged_at"].fillna(df["created_at"]).dt.date
    df["deployment"] = df["deployment"].fillna(LOCAL)
    df["run_id"] = df["run_id"].fillna("(unknown)")
    df["charged_run_id"] = df["charged_run_id"].fillna(df["run_id"])  # only charged rows use it
    df["failed"] = ~df["charged"] & (df["status"] == "failed")
    df["pending"] = ~df["charged"] & ~df["failed"]
    return df


def rollup(df: pd.DataFrame, create_key: str, charge_key: str, name: str, price: float) -> pd.DataFrame:
    """created/failed/pending by `create_key`; succeeded/units by `charge_key`; cost from units."""
    made = df.groupby(create_key).agg(created=("charged", "size"), failed=("failed", "sum"),
                                      pending=("pending", "sum"))
    paid = df[df["charged"]].groupby(charge_key).agg(succeeded=("charged", "size"), units=("units", "sum"))
    out = made.join(paid, how="outer").reindex(columns=COUNTS).fillna(0).astype(int)
    out.index.name = name
    out["cost"] = (out["units"] * price).round(4)
    return out


def focus_rows(attempts: pd.DataFrame, price: float, currency: str) -> pd.DataFrame:
    """One FOCUS-style row per charge, over the charge's UTC day."""
    charged = attempts[attempts["charged"]]
    start = pd.to_datetime(charged["day"]).dt.tz_localize(UTC)
    cost = (charged["units"] * price).round(6)
    tags = [json.dumps({"run_id": r.charged_run_id, "deployment": r.deployment,
                        "row_id": or_none(r.row_id)}, sort_keys=True) for r in charged.itertuples()]
    return pd.DataFrame({
        "ChargePeriodStart": start.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ChargePeriodEnd": (start + pd.Timedelta(days=1)).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "BilledCost": cost, "EffectiveCost": cost, "BillingCurrency": currency,
        "ConsumedQuantity": charged["units"], "ConsumedUnit": "unit", "ResourceId": charged["task_id"],
        "ChargeCategory": "Usage", "ChargeDescription": "background change (one successful task)",
        "ProviderName": "Perfect Corp", "ServiceName": SERVICE_NAME, "Tags": tags,
    }, columns=FOCUS_COLUMNS).reset_index(drop=True)
