"""Cost over time, from Backdrop's ledger and the vendor's credit history. Plain pandas and SQLAlchemy.

A period is `[since, until)` in UTC days. Each ledger attempt counts on the day it was charged (`charged_at`,
when Backdrop saw its success), or, never charged, on the day it was created; a ledger from before
`charged_at` existed has none for its old rows, which count on their creation day. Creates count for their
`run_id`, charges for their `charged_run_id` (the one run that recorded the charge). The vendor's credit
history (`target_id` = task id) is matched both ways: units it charged that no ledger row knows, and ledger
charges it does not show.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import func, select

from backdrop.client import CreditHistoryEntry
from backdrop.files import atomic_write
from backdrop.report.table import escape_formula
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger, work

__all__ = [
    "CLOCK_SLACK", "FOCUS_COLUMNS", "LOCAL", "SERVICE_NAME", "BudgetStatus", "CostReport", "Reconciliation",
    "budget_window", "build_cost_report", "cost_markdown", "day_start", "draw_units_chart", "focus_rows",
    "load_attempts", "reconcile", "write_cost_files",
]

SERVICE_NAME = "Perfect Corp AI Photo Background Change"
#: the deployment shown for runs started outside a Prefect deployment
LOCAL = "(local)"
#: a charge may be stamped a little before or after the ledger's time (clocks differ)
CLOCK_SLACK = timedelta(minutes=5)
FOCUS_COLUMNS = [
    "ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "EffectiveCost", "BillingCurrency",
    "ConsumedQuantity", "ConsumedUnit", "ResourceId", "ChargeCategory", "ChargeDescription", "ProviderName",
    "ServiceName", "Tags",
]
_COUNTS = ["created", "succeeded", "failed", "pending", "units"]
_LEDGER_COLUMNS = [work.c.task_id, work.c.run_id, work.c.charged_run_id, work.c.deployment, work.c.row_id,
                   work.c.status, work.c.units, work.c.created_at, work.c.charged_at]
#: an attempt belongs to the day the vendor charged it, or, never charged, to the day it was created
_WHEN = func.coalesce(work.c.charged_at, work.c.created_at)
BudgetPeriod = Literal["month", "week", "day"]


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


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


@dataclass
class CostReport:
    """Everything the cost report shows; tables are DataFrames, the rest plain values."""

    since: date
    until: date
    unit_price: float
    currency: str
    generated_at: datetime
    totals: dict[str, Any]
    daily: pd.DataFrame
    runs: pd.DataFrame
    deployments: pd.DataFrame
    focus: pd.DataFrame
    reconciliation: Reconciliation | None = None
    budget: BudgetStatus | None = None
    balance: float | None = None

    def summary(self, files: dict[str, str] | None = None) -> dict[str, Any]:
        """A JSON-safe view (the flow's result, the CLI's --json-output and cost_summary.json)."""
        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(_days_as_text(df).to_json(orient="records"))

        return {
            "since": self.since.isoformat(), "until": self.until.isoformat(), "currency": self.currency,
            "unit_price": self.unit_price, "generated_at": self.generated_at.isoformat(),
            "totals": self.totals, "balance": self.balance, "daily": records(self.daily),
            "runs": records(self.runs), "deployments": records(self.deployments),
            "reconciliation": self.reconciliation.as_dict() if self.reconciliation else None,
            "budget": self.budget.as_dict() if self.budget else None,
            "over_budget": bool(self.budget and self.budget.alert), "files": files or {},
        }


def _days_as_text(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype({"day": str}) if "day" in df else df


def load_attempts(ledger: Ledger, since: datetime, until: datetime,
                  environments: Collection[str] | None = None) -> pd.DataFrame:
    """Ledger attempts charged (or, never charged, created) in `[since, until)`, with their outcome:
    succeeded, failed or pending; `day` is that day (UTC)."""
    stmt = select(*_LEDGER_COLUMNS).where(_WHEN >= since, _WHEN < until)
    if environments is not None:
        stmt = stmt.where(work.c.environment.in_(list(environments)))
    with ledger.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt.order_by(_WHEN, work.c.id)).mappings()]
    df = pd.DataFrame(rows, columns=[c.name for c in _LEDGER_COLUMNS])
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


def _rollup(df: pd.DataFrame, create_key: str, charge_key: str, name: str, price: float) -> pd.DataFrame:
    """created/failed/pending by `create_key`; succeeded/units by `charge_key`; cost from units."""
    made = df.groupby(create_key).agg(created=("charged", "size"), failed=("failed", "sum"),
                                      pending=("pending", "sum"))
    paid = df[df["charged"]].groupby(charge_key).agg(succeeded=("charged", "size"), units=("units", "sum"))
    out = made.join(paid, how="outer").reindex(columns=_COUNTS).fillna(0).astype(int)
    out.index.name = name
    out["cost"] = (out["units"] * price).round(4)
    return out


def _vendor_charges(history: Sequence[CreditHistoryEntry]) -> pd.DataFrame:
    rows = [{"history_id": e.id, "task_id": e.target_id, "units": -e.units, "timestamp": e.timestamp}
            for e in history if e.units < 0]
    df = pd.DataFrame(rows, columns=["history_id", "task_id", "units", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def _opt(value: Any) -> Any:
    """None for a missing cell (pandas reads SQL NULL as NaN or None)."""
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def reconcile(attempts: pd.DataFrame, history: Sequence[CreditHistoryEntry], known_task_ids: set[str],
              since: datetime, until: datetime) -> Reconciliation:
    """Match the period's ledger charges with the vendor's charges by task id, both ways.

    `history` should reach `CLOCK_SLACK` beyond the period on both sides, so that a charge stamped just
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
        unknown_to_ledger=[{"task_id": _opt(r.task_id), "units": float(r.units),
                            "time": r.timestamp.isoformat(), "history_id": r.history_id}
                           for r in unknown.itertuples()],
        missing_at_vendor=[{"task_id": _opt(r.task_id), "units": int(r.units),
                            "run_id": r.charged_run_id, "deployment": r.deployment,
                            "row_id": _opt(r.row_id), "created_at": r.created_at.isoformat()}
                           for r in missing.itertuples()],
    )


def focus_rows(attempts: pd.DataFrame, price: float, currency: str) -> pd.DataFrame:
    """One FOCUS-style row per charge, over the charge's UTC day."""
    charged = attempts[attempts["charged"]]
    start = pd.to_datetime(charged["day"]).dt.tz_localize(UTC)
    cost = (charged["units"] * price).round(6)
    tags = [json.dumps({"run_id": r.charged_run_id, "deployment": r.deployment,
                        "row_id": _opt(r.row_id)}, sort_keys=True) for r in charged.itertuples()]
    return pd.DataFrame({
        "ChargePeriodStart": start.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ChargePeriodEnd": (start + pd.Timedelta(days=1)).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "BilledCost": cost, "EffectiveCost": cost, "BillingCurrency": currency,
        "ConsumedQuantity": charged["units"], "ConsumedUnit": "unit", "ResourceId": charged["task_id"],
        "ChargeCategory": "Usage", "ChargeDescription": "background change (one successful task)",
        "ProviderName": "Perfect Corp", "ServiceName": SERVICE_NAME, "Tags": tags,
    }, columns=FOCUS_COLUMNS).reset_index(drop=True)


def _budget(ledger: Ledger, settings: BackdropSettings, environments: Collection[str] | None,
            now: datetime) -> BudgetStatus | None:
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
        history: The vendor's credit history from `since - CLOCK_SLACK` on; None skips reconciliation.
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
    daily = _rollup(attempts, "day", "day", "day", price).reindex(days, fill_value=0)
    runs = _rollup(attempts, "run_id", "charged_run_id", "run_id", price)
    deployments = _rollup(attempts, "deployment", "deployment", "deployment", price)
    recon = None
    if history is not None:
        recon = reconcile(attempts, history, ledger.known_task_ids(), lo, hi)
        vendor = _vendor_charges(history)
        vendor = vendor[(vendor["timestamp"] >= lo) & (vendor["timestamp"] < hi)]
        per_day = vendor.groupby(vendor["timestamp"].dt.date)["units"].sum()
        daily["vendor_units"] = per_day.reindex(days, fill_value=0.0).astype(float)
    totals = {k: int(daily[k].sum()) for k in _COUNTS}
    totals["cost"] = round(totals["units"] * price, 4)
    if recon is not None:
        totals["vendor_units"] = recon.vendor_units
    return CostReport(
        since=since, until=until, unit_price=price, currency=settings.currency, generated_at=now,
        totals=totals, daily=daily.reset_index(),
        runs=runs.sort_values(["units", "created"], ascending=False).reset_index(),
        deployments=deployments.sort_values("units", ascending=False).reset_index(),
        focus=focus_rows(attempts, price, settings.currency), reconciliation=recon,
        budget=_budget(ledger, settings, environments, now), balance=balance,
    )


# ---- files: tables as CSV and Parquet, the summary as JSON, units per day as a PNG ----------------------

def write_cost_files(report: CostReport, out_dir: Path) -> dict[str, str]:
    """Write the FOCUS rows and the daily, per-run and per-deployment tables (CSV and Parquet), the summary
    (JSON) and the chart (PNG) into `out_dir`; return their paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for name, df in (("focus", report.focus), ("daily", report.daily), ("runs", report.runs),
                     ("deployments", report.deployments)):
        frame = _days_as_text(df)
        csv, parquet = out_dir / f"cost_{name}.csv", out_dir / f"cost_{name}.parquet"
        safe = frame.map(escape_formula) if not frame.empty else frame
        atomic_write(csv, lambda p, f=safe: f.to_csv(p, index=False))
        atomic_write(parquet, lambda p, f=frame: f.to_parquet(p, index=False))
        paths[f"{name}_csv"], paths[f"{name}_parquet"] = str(csv), str(parquet)
    chart = out_dir / "cost_units_per_day.png"
    atomic_write(chart, lambda p: draw_units_chart(report.daily, Path(p)))
    paths["chart"] = str(chart)
    summary = out_dir / "cost_summary.json"
    paths["summary"] = str(summary)
    body = json.dumps(report.summary(paths), indent=2, default=str)
    atomic_write(summary, lambda p: Path(p).write_text(body))
    return paths


def _tick_step(top: float) -> int:
    """The smallest of 1, 2, 5 × 10^k with four steps reaching `top`."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if 4 * m * step >= top:
                return m * step
        step *= 10


BAR = (44, 110, 200)
_INK, _GRID = (40, 40, 40), (225, 225, 225)


def draw_units_chart(daily: pd.DataFrame, path: Path, *, title: str = "Units charged per day (UTC)") -> Path:
    """A plain bar chart of `daily["units"]` by `daily["day"]`, with axis labels, as a PNG."""
    from PIL import Image, ImageDraw, ImageFont

    n = max(len(daily), 1)
    left, right, top, bottom = 64, 20, 36, 64
    slot = max(8, min(40, 720 // n))
    width, height = left + right + slot * n, 360
    img = Image.new("RGB", (max(width, 360), height), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    plot_h = height - top - bottom
    step = _tick_step(float(daily["units"].max()) if len(daily) else 0.0)
    y_max = 4 * step
    for i in range(5):  # y grid and tick labels
        y = top + plot_h - round(plot_h * i / 4)
        draw.line([(left, y), (left + slot * n, y)], fill=_GRID)
        draw.text((left - 6, y), str(step * i), fill=_INK, font=font, anchor="rm")
    every = max(1, -(-n // 12))  # at most ~12 day labels
    for i, (day, units) in enumerate(zip(daily.get("day", []), daily.get("units", []), strict=True)):
        x0 = left + slot * i + max(1, slot // 6)
        x1 = left + slot * (i + 1) - max(1, slot // 6)
        if units:
            draw.rectangle([x0, top + plot_h - round(plot_h * units / y_max), x1, top + plot_h], fill=BAR)
        if i % every == 0:
            draw.text(((x0 + x1) // 2, top + plot_h + 6), str(day)[5:], fill=_INK, font=font, anchor="mt")
    draw.line([(left, top), (left, top + plot_h), (left + slot * n, top + plot_h)], fill=_INK, width=1)
    draw.text((left, top - 8), "units", fill=_INK, font=font, anchor="ls")
    draw.text((left + slot * n // 2, height - 14), "day (UTC, month-day)", fill=_INK, font=font, anchor="ms")
    draw.text((img.width // 2, 14), title, fill=_INK, font=font, anchor="mm")
    img.save(path, "PNG")
    return path


# ---- markdown, for the Prefect artifact (and the README) -------------------------------------------------

def _md_table(df: pd.DataFrame, columns: list[str], limit: int | None = None) -> list[str]:
    shown = df if limit is None else df.head(limit)
    align = ["---" if c in ("day", "run_id", "deployment", "bar") else "---:" for c in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    for row in shown[columns].itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in row) + " |")
    if limit is not None and len(df) > limit:
        lines.append(f"| … {len(df) - limit} more in the CSV | " + " | ".join("" for _ in columns[1:]) + " |")
    return lines


def cost_markdown(report: CostReport, files: dict[str, str] | None = None, *, bar_width: int = 20) -> str:
    """The report as markdown: totals, budget, units per day (with a text bar), deployments, runs and
    the differences with the vendor's history."""
    t, cur, files = report.totals, report.currency, files or {}
    lines = [f"# Backdrop cost: {report.since} to {report.until} (UTC days, the last excluded)", "",
             "| created | succeeded (charged) | failed (not charged) | pending | units | cost |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| {t['created']} | {t['succeeded']} | {t['failed']} | {t['pending']} | {t['units']} "
             f"| {t['cost']:.2f} {cur} |", "",
             f"At {report.unit_price:g} {cur} per unit."]
    if report.balance is not None:
        lines.append(f"**Balance now:** {report.balance:g} units.")
    if (b := report.budget) is not None:
        verdict = "**over the alarm threshold**" if b.alert else "within budget"
        lines += ["", f"## Budget ({b.period} {b.start} to {b.end})", "",
                  f"{verdict}: {b.message()} "
                  f"(projected spend {b.projected_units * report.unit_price:.2f} {cur}, linear on "
                  f"{b.days_elapsed} of {b.days_total} days)."]
    daily, note = report.daily.copy(), []
    if len(daily) > 7:  # past a week, only the days something happened
        daily = daily[(daily["created"] > 0) | (daily.get("vendor_units", 0) > 0)]
        note = ["", f"Days with no activity are left out ({len(daily)} of {len(report.daily)} shown; "
                    "cost_daily.csv has every day)."]
    top = max(float(daily["units"].max()) if len(daily) else 0.0, 1.0)
    daily["bar"] = ["`" + "█" * round(bar_width * u / top) + "`" if u else "" for u in daily["units"]]
    chart = files.get("chart")
    lines += ["", "## Units per day", ""]
    if chart:
        lines += [f"Chart: [{Path(chart).name}]({Path(chart).resolve().as_uri()}) (`{chart}`)", ""]
    cols = ["day", *_COUNTS, *(["vendor_units"] if "vendor_units" in daily else []), "bar"]
    lines += _md_table(daily, cols) + note
    lines += ["", "## Per deployment", "", *_md_table(report.deployments, ["deployment", *_COUNTS, "cost"])]
    lines += ["", "## Per run", "", *_md_table(report.runs, ["run_id", *_COUNTS, "cost"], limit=25)]
    if (r := report.reconciliation) is not None:
        clean = not (r.difference or r.unknown_to_ledger or r.missing_at_vendor)
        verdict = "matches the ledger" if clean else (
            f"**{len(r.unknown_to_ledger)} charges unknown to the ledger, {len(r.missing_at_vendor)} ledger "
            f"charges not in the vendor's history, difference {r.difference:+g} units**")
        lines += ["", "## Vendor's credit history", "",
                  f"{r.vendor_units:g} units charged by the vendor in the period, {r.ledger_units} in the "
                  f"ledger: {verdict}."]
        if r.unknown_to_ledger:
            lines += ["", "Charged by the vendor, unknown to the ledger:", "", "| task id | units | time |",
                      "|---|---:|---|"] + [f"| `{u['task_id']}` | {u['units']:g} | {u['time']} |"
                                           for u in r.unknown_to_ledger]
        if r.missing_at_vendor:
            lines += ["", "Charged in the ledger, absent from the vendor's history:", "",
                      "| task id | units | run | row |", "|---|---:|---|---|"] + [
                f"| `{m['task_id']}` | {m['units']} | {m['run_id']} | {m['row_id']} |"
                for m in r.missing_at_vendor]
    if files:
        lines += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in files.items()]
    return "\n".join(lines) + "\n"
