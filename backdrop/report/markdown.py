"""Markdown and table renderings of a batch summary, for Prefect artifacts and the CLI."""

from __future__ import annotations

from typing import Any, cast

import pandas as pd

__all__ = ["failures_table", "summary_markdown"]

_FAILURE_COLUMNS = ["line", "row_id", "status", "failed_stage", "error_code", "error_message", "http_status",
                    "task_id", "request_id", "input"]


def summary_markdown(s: dict[str, Any]) -> str:
    """The run summary as markdown: counts, units charged versus rows failed, cost, failures by code."""
    lines = [
        f"# Backdrop batch: {s.get('csv', '')}",
        "",
        "| rows | succeeded | failed | skipped | pending reconcile | not attempted | reused (paid before) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['rows']} | {s['succeeded']} | {s['failed']} | {s['skipped']} | {s['pending_reconcile']} "
        f"| {s.get('not_attempted', 0)} | {s['reused']} |",
        "",
        f"**Units charged:** {s['units_charged']} on {s['rows_charged']} rows "
        f"({s['units_per_task']} per success); **rows failed, not charged:** {s['rows_failed_not_charged']}.",
        f"**Cost:** {s['cost']:.2f} {s['currency']} at {s['unit_price']} {s['currency']} per unit.",
    ]
    if "vendor_units" in s and s["vendor_units"] is None:
        lines.append("**Vendor's credit history:** could not be read back; the units above are the ledger's.")
    elif "vendor_units" in s:
        diff = s.get("units_difference", 0)
        verdict = "matches the report" if not diff else f"**differs from the report by {diff:+g} units**"
        lines.append(f"**Vendor's credit history:** {s['vendor_units']:g} units for this run's tasks; {verdict}.")
    if s.get("possible_duplicates"):
        lines.append(f"**Possible duplicate charges:** {s['possible_duplicates']} rows were created again by hand "
                     "(`backdrop reconcile --recreate`) while an earlier create may have been charged.")
    if s.get("dry_run"):
        lines.append(
            f"**Dry run:** nothing was created. Estimated {s.get('estimated_units', 0)} units, "
            f"{s.get('estimated_cost', 0):.2f} {s['currency']}."
        )
    for key, label in (("gallery_error", "Gallery not written"), ("webhooks_fallback", "Webhooks"),
                       ("feature_note", "Feature")):
        if s.get(key):  # best-effort parts that failed: the report is complete without them
            lines.append(f"**{label}:** {s[key]}")
    if s["failures_by_code"]:
        lines += ["", "## Failures by error code", "", "| error code | rows |", "|---|---:|"]
        for code, n in sorted(s["failures_by_code"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| `{code}` | {n} |")
    files = s.get("files") or {}
    if files:
        lines += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in files.items()]
    return "\n".join(lines) + "\n"


def failures_table(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows that did not succeed (nor were skipped by a dry run), as JSON-safe records."""
    if df.empty:
        return []
    bad = df[~df["status"].isin(["succeeded"]) & (df["error_code"] != "dry_run")]
    cols = [c for c in _FAILURE_COLUMNS if c in bad.columns]
    # the keys are `cols`, strings; pandas-stubs types a record's keys as any Hashable
    records = cast("list[dict[str, Any]]", bad[cols].astype(object).where(bad[cols].notna(), None).to_dict("records"))
    return [{k: (str(v) if v is not None else None) for k, v in r.items()} for r in records]
