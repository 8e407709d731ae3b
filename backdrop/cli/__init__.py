"""`backdrop`: run a batch, run the demo, serve the sandbox, report the cost, settle pending pictures.

This module owns the cyclopts app (its commands live in run.py, sandbox.py, cost.py and reconcile.py) and
`main`, which turns Prefect's server failing to start into one line, and a SIGTERM into the same unwinding as
Ctrl-C (a sandbox the command started is stopped; a run writes its report).

Exit codes: 0 every row succeeded (or a dry run), 1 some rows did not, 2 bad usage, a bad CSV, or Prefect
not starting.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from cyclopts import App

from backdrop.cli import cost, reconcile, run, sandbox
from backdrop.cli import startup as prefect_startup
from backdrop.cli._tables import console

app = App(name="backdrop", help="Bulk background changes for product photos (Perfect Corp API, Prefect).")
app.command(run.run)
app.command(run.demo)
app.command(sandbox.sandbox)
app.command(cost.cost)
app.command(reconcile.reconcile)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def main() -> None:
    # A supervisor or a script stops a command by pid with SIGTERM, whose default kills Python without unwinding.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except Exception as exc:  # Prefect's server failing to start: one line, the traceback with --verbose
        if (line := prefect_startup.failure_line(exc)) is None:
            raise
        if "--verbose" in sys.argv:
            console.print_exception()
        console.print(f"[red]error:[/red] {line}", soft_wrap=True, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
