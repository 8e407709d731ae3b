"""The cost report flow: what Backdrop spent over a period, checked against the vendor's credit history.

    read balance + credit history (task) -> ledger totals per day / run / deployment, FOCUS rows, budget
    -> files (CSV, Parquet, PNG, JSON) -> markdown artifact `backdrop-cost` -> Completed, or "Over budget"

Without an API key (a finance user, a sandbox user) it answers from the ledger alone and says plainly that the
vendor's side (balance, credit history) was not checked.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.context import get_run_context
from prefect.states import Completed

from backdrop import cost
from backdrop.identity import account_environment_ids
from backdrop.params import CostOut, CostParameters, Since, Until, documented
from backdrop.roots import confine_output
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger
from flows.events import OVER_BUDGET_EVENT, emit_run_event
from flows.naming import cost_run_name
from tasks.credits import read_credits
from tasks.resources import run_resources


def _account_environments(settings: BackdropSettings) -> set[str]:
    """The ledger environment ids of this account (host and key), whatever the feature slug: the current one and
    the per-slug ones of earlier releases (rows a run has not moved yet, or duplicates it left)."""
    return set(account_environment_ids(settings))


@flow(name="cost-report", flow_run_name=cost_run_name, log_prints=False)
@documented(CostParameters, style="google")  # the form's descriptions (Args), from backdrop/params.py
async def cost_report(since: Since = None, until: Until = None, out: CostOut = "cost-output") -> Any:
    """Report units and cost per day, run and deployment, reconcile them with the vendor, check the budget.

    Returns:
        The summary (totals, tables, reconciliation, budget, file paths). When the budget's share used or
        projected reaches BACKDROP_BUDGET_WARN_AT, the run ends Completed, named "Over budget".
    """
    async with run_resources() as res:
        return await _cost_report(res.settings(require_key=False), since, until, out)


async def _cost_report(settings: BackdropSettings, since: date | None, until: date | None, out: str) -> Any:
    """The flow's body, with the run's resources open (the credits task's client, the Secret block read once)."""
    logger = get_run_logger()
    out_dir = confine_output(out, settings)  # a parameter: refused outside the output roots, before anything
    now = datetime.now(UTC)
    today = now.date()
    since = since or cost.budget_window(today, settings.budget_period)[0]
    until = until or today + timedelta(days=1)
    if until <= since:
        raise ValueError(f"until ({until}) must be after since ({since})")
    credits = None
    if settings.api_key is not None:
        credits = await read_credits(cost.day_start(since) - cost.PERIOD_EDGE_SLACK)
    else:
        logger.warning(cost.NOT_CHECKED)
    ledger = Ledger(settings.effective_ledger_url())
    report = cost.build_cost_report(ledger, since, until, settings,
                                    environments=_account_environments(settings),
                                    history=credits.history if credits else None,
                                    balance=credits.balance if credits else None, now=now)
    files = cost.write_cost_files(report, out_dir)
    await acreate_markdown_artifact(cost.cost_markdown(report, files), key="backdrop-cost",
                                    description=f"Backdrop cost, {since} to {until}")
    summary = report.summary(files)
    t, recon = report.totals, report.reconciliation
    logger.info("%s to %s: %d created, %d charged, %d units, %.2f %s", since, until, t["created"],
                t["succeeded"], t["units"], t["cost"], report.currency)
    if recon and (recon.unknown_to_ledger or recon.missing_at_vendor):
        logger.warning("credit history and ledger differ: %d vendor charges unknown to the ledger, %d ledger "
                       "charges not in the vendor's history", len(recon.unknown_to_ledger),
                       len(recon.missing_at_vendor))
    if report.budget and report.budget.alert:
        logger.warning("Backdrop over budget: %s", report.budget.message())
        emit_run_event(OVER_BUDGET_EVENT, str(get_run_context().flow_run.id),  # type: ignore[union-attr]
                       report.budget.as_dict())
        return Completed(name="Over budget", message=report.budget.message(), data=summary)
    return summary
