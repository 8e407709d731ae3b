"""`backdrop cost`: the cost report flow run in-process, its tables printed; exit code 1 over the budget's alarm.

The period is parsed and checked here (one line, exit code 2) before Prefect starts; the flow checks it again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from backdrop.cli import startup as prefect_startup
from backdrop.cli._tables import console, cost_tables
from backdrop.cli.run import quiet_prefect
from backdrop.params import CostParameters, documented


@documented(CostParameters, style="numpy", own_types=("since", "until"))  # help from backdrop/params.py
def cost(*, since: str | None = None, until: str | None = None, out: str = "cost-output",
         json_output: bool = False, verbose: bool = False) -> int:
    """Report units and cost over a period from the ledger and the vendor's credit history; check the budget.

    Exit codes: 0 within budget (or no budget), 1 over the budget's alarm threshold, 2 bad usage or an error.

    Parameters
    ----------
    json_output
        Print only the summary, as JSON, on standard output.
    verbose
        Show Prefect's INFO logs.
    """
    from datetime import date

    try:
        first, after = (date.fromisoformat(d) if d else None for d in (since, until))
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    if first and after and after <= first:
        console.print("[red]error:[/red] --until must be after --since")
        return 2
    quiet_prefect(verbose)
    prefect_startup.generous_startup_timeout()
    from flows.cost_report import cost_report

    state = asyncio.run(cost_report(since=first, until=after, out=out, return_state=True))
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        console.print(f"[red]error:[/red] {result}")
        return 2
    summary: dict[str, Any] = result
    if json_output:
        print(json.dumps(summary, default=str))
    else:
        for table in cost_tables(summary):
            console.print(table)
        for kind, path in summary["files"].items():
            console.print(f"{kind}: {path}", soft_wrap=True, highlight=False)
        if summary["over_budget"]:
            console.print(f"[red]over budget:[/red] {state.message}")
    return 1 if summary["over_budget"] else 0
