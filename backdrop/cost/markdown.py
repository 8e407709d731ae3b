"""The cost report as markdown (the Prefect artifact `backdrop-cost`, and the README): totals, budget, units
per day with a text bar, per-deployment and per-run tables, and the differences with the vendor's history."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from backdrop.cost.report import NOT_CHECKED, CostReport
from backdrop.cost.rollup import COUNTS
from backdrop.report.inline import data_uri

__all__ = ["cost_markdown"]


CHART_WIDTH = 900


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
    if not report.vendor_checked:
        lines += ["", f"**Ledger only:** {NOT_CHECKED}."]
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
    if chart:  # inline (a browser refuses file:// links from the Prefect UI), and the path to copy
        uri = data_uri(Path(chart), CHART_WIDTH, budget=80_000)
        lines += [*([f"![units per day]({uri})", ""] if uri else []), f"Chart file: `{chart}`", ""]
    cols = ["day", *COUNTS, *(["vendor_units"] if "vendor_units" in daily else []), "bar"]
    lines += _md_table(daily, cols) + note
    lines += ["", "## Per deployment", "", *_md_table(report.deployments, ["deployment", *COUNTS, "cost"])]
    lines += ["", "## Per run", "", *_md_table(report.runs, ["run_id", *COUNTS, "cost"], limit=25)]
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
