"""What the CLI prints: its console (standard error) and the rich tables of a batch's and a cost report's summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)

_BATCH_COUNTS = (("rows", "rows"), ("succeeded", "succeeded"), ("failed", "failed"), ("skipped", "skipped"),
                 ("pending reconcile", "pending_reconcile"), ("reused (paid before)", "reused"),
                 ("units charged", "units_charged"))
_COST_LABELS = {"succeeded": "succeeded (charged)", "failed": "failed (not charged)"}
_COST_COUNTS = ["created", "succeeded", "failed", "pending", "units", "cost"]


def summary_table(summary: dict[str, Any]) -> Table:
    """A batch's summary: rows by status, units and cost, failures by code, the files written."""
    table = Table(title="Backdrop batch", show_header=False)
    for label, key in _BATCH_COUNTS:
        table.add_row(label, str(summary.get(key, 0)))
    table.add_row("cost", f"{summary.get('cost', 0):.2f} {summary.get('currency', '')}")
    if summary.get("dry_run"):
        table.add_row("estimated units", str(summary.get("estimated_units", 0)))
        table.add_row("estimated cost", f"{summary.get('estimated_cost', 0):.2f} {summary.get('currency', '')}")
    for code, n in (summary.get("failures_by_code") or {}).items():
        table.add_row(f"  failed: {code}", str(n))
    for kind, path in (summary.get("files") or {}).items():
        table.add_row(kind, path)
    return table


def cost_tables(summary: dict[str, Any]) -> list[Table]:
    """A cost report: its totals, per day, deployment and run, and the charges the two records disagree on."""
    recon = summary.get("reconciliation")
    return [_cost_head(summary), *_breakdowns(summary), *(_disagreements(recon) if recon else [])]


def _cost_head(summary: dict[str, Any]) -> Table:
    cur, t = summary["currency"], summary["totals"]
    head = Table(title=f"Backdrop cost {summary['since']} to {summary['until']} (UTC, last day excluded)",
                 show_header=False)
    for key in ("created", "succeeded", "failed", "pending", "units"):
        head.add_row(_COST_LABELS.get(key, key), str(t[key]))
    head.add_row("cost", f"{t['cost']:.2f} {cur}")
    if (recon := summary.get("reconciliation")) is not None:
        head.add_row("vendor units", f"{recon['vendor_units']:g}")
    if summary.get("balance") is not None:
        head.add_row("balance now", f"{summary['balance']:g} units")
    if summary.get("vendor_checked") is False:
        head.add_row("vendor", "[yellow]not checked[/yellow] (no API key): ledger only")
    if (budget := summary.get("budget")) is not None:
        head.add_row("budget", _budget_line(budget))
    return head


def _budget_line(budget: dict[str, Any]) -> str:
    return (f"{'[red]OVER[/red] ' if budget['alert'] else ''}{budget['used_units']} "
            f"of {budget['budget_units']} units this {budget['period']} "
            f"({budget['share']:.0%}), projected {budget['projected_units']:g} "
            f"({budget['projected_share']:.0%})")


def _breakdowns(summary: dict[str, Any]) -> list[Table]:
    days = [r for r in summary["daily"] if r["created"] or r["units"]]
    return [_count_table(title, key, rows) for title, key, rows in (
        ("Per day", "day", days), ("Per deployment", "deployment", summary["deployments"]),
        ("Per run", "run_id", summary["runs"][:25]))]


def _count_table(title: str, key: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for col in (key, *_COST_COUNTS):
        table.add_column(col, justify="left" if col == key else "right")
    for r in rows:
        table.add_row(str(r[key]), *(f"{r[c]:g}" if isinstance(r[c], float) else str(r[c]) for c in _COST_COUNTS))
    return table


def _disagreements(recon: dict[str, Any]) -> list[Table]:
    tables = []
    for title, rows in (("Charged by the vendor, unknown to the ledger", recon["unknown_to_ledger"]),
                        ("Charged in the ledger, absent from the vendor's history", recon["missing_at_vendor"])):
        if rows:
            table = Table(title=title)
            for col in rows[0]:
                table.add_column(col)
            for r in rows:
                table.add_row(*(str(v) for v in r.values()))
            tables.append(table)
    return tables
