"""Serve Backdrop's flows without a work pool: one long-running process that also runs the schedule.

    python deployments/serve.py

Needs a Prefect API (PREFECT_API_URL, or `prefect server start` on this machine). Stopping the process
pauses the schedule (Prefect's default); a supervisor that restarts it should keep pause_on_shutdown=False.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import cast

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backdrop.cli.startup import generous_startup_timeout
from flows.change_backgrounds import change_backgrounds
from flows.cost_report import cost_report

#: the folders served runs may read CSVs from and write outputs to (as prefect.yaml's job variables); a value
#: already in the environment wins
ROOTS = {"BACKDROP_INPUT_ROOTS": '["inbox", "backdrop/demo"]',
         "BACKDROP_OUTPUT_ROOTS": '["inbox-output", "backdrop-output"]'}


def deployments() -> list[RunnerDeployment]:
    """The same deployments as prefect.yaml, as served deployments."""
    manual = change_backgrounds.to_deployment(
        name="manual-served",
        tags=["backdrop", "manual"],
        parameters={"csv": "backdrop/demo/products.csv", "out": "backdrop-output"},
    )
    nightly = change_backgrounds.to_deployment(
        name="inbox-nightly-served",
        tags=["backdrop", "scheduled"],
        schedules=[Cron("0 2 * * *", timezone="Europe/Paris")],  # every day at 02:00, Paris time
        concurrency_limit=1,  # never two nightly runs at once
        parameters={"csv": "inbox/products.csv", "out": "inbox-output", "max_units": 4000},
    )
    cost = cost_report.to_deployment(
        name="cost-daily-served",
        tags=["backdrop", "scheduled", "cost"],
        parameters={"out": "cost-output"},
        schedules=[Cron("30 6 * * *", timezone="Europe/Paris")],  # every day at 06:30, Paris time
        concurrency_limit=1,
    )
    # called from sync code, Prefect's async_dispatch returns the deployment itself (its type adds the coroutine
    # an async caller would get)
    return [cast(RunnerDeployment, d) for d in (manual, nightly, cost)]


if __name__ == "__main__":
    generous_startup_timeout()  # 180 s for a temporary server (no PREFECT_API_URL) unless set
    for name, value in ROOTS.items():  # served runs are this process's children: they inherit it
        os.environ.setdefault(name, value)
    serve(*deployments(), pause_on_shutdown=False)
