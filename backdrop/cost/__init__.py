"""Cost over time, from Backdrop's ledger and the vendor's credit history (plain pandas): the public API of
the cost report, re-exported from the modules that own each job.

A period is `[since, until)` in UTC days. Each ledger attempt counts on the day it was charged (`charged_at`,
when Backdrop saw its success), or, never charged, on the day it was created; a ledger from before
`charged_at` existed has none for its old rows, which count on their creation day. Creates count for their
`run_id`, charges for their `charged_run_id` (the one run that recorded the charge). The vendor's credit
history (`target_id` = task id) is matched both ways: units it charged that no ledger row knows, and ledger
charges it does not show.

    rollup    the ledger's attempts as a frame (through `Ledger.attempts_between`), roll-ups, FOCUS rows
    vendor    the credit history's charges matched with the ledger's; `PERIOD_EDGE_SLACK`
    budget    the budget period, its use and projection
    report    `CostReport` and `build_cost_report`
    chart     the units-per-day PNG
    markdown  the Prefect artifact
    files     the CSV, Parquet, PNG and JSON files
"""

from __future__ import annotations

from backdrop.cost.budget import BudgetPeriod, BudgetStatus, budget_window
from backdrop.cost.files import write_cost_files
from backdrop.cost.markdown import cost_markdown
from backdrop.cost.report import NOT_CHECKED, CostReport, build_cost_report
from backdrop.cost.rollup import FOCUS_COLUMNS, LOCAL, SERVICE_NAME, day_start
from backdrop.cost.vendor import PERIOD_EDGE_SLACK, Reconciliation

__all__ = [
    "NOT_CHECKED",
    "FOCUS_COLUMNS", "LOCAL", "PERIOD_EDGE_SLACK", "SERVICE_NAME", "BudgetPeriod", "BudgetStatus", "CostReport",
    "Reconciliation", "budget_window", "build_cost_report", "cost_markdown", "day_start", "write_cost_files",
]
