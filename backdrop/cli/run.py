"""`backdrop run` and `backdrop demo`: check the CSV, start Prefect, run the batch flow in-process, print its summary.

A bad CSV, or a CSV or output folder outside the roots, is refused here before Prefect starts (exit code 2);
the flow reads and checks the CSV again, as a run from a deployment needs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Coroutine
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.markup import escape

from backdrop.cli import startup as prefect_startup
from backdrop.cli._tables import console, summary_table
from backdrop.cli.sandbox import sandbox_env, sandbox_process
from backdrop.params import NO_CAP, BatchParameters, FeatureName, documented
from backdrop.settings import InputMode

if TYPE_CHECKING:
    from prefect import State


def run_for_state(call: Awaitable[State[Any]]) -> State[Any]:
    """Run an async flow called with `return_state=True` to its final state. Prefect types that call as an
    Awaitable; it is a coroutine, which is what `asyncio.run` takes."""
    return asyncio.run(cast("Coroutine[Any, Any, State[Any]]", call))


def quiet_prefect(verbose: bool) -> None:
    """Prefect's log level for a terminal; set before Prefect is imported."""
    # A batch is thousands of task runs, too many INFO lines for a terminal.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _run_flow(params: dict[str, Any], *, as_json: bool) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from backdrop.errors import BackdropError, ConfigError
    from backdrop.pipeline.inputs import read_rows
    from backdrop.roots import confine_output

    try:  # no key at all, a bad CSV, or a CSV or output folder outside the roots fails fast, before Prefect starts
        if not any(os.environ.get(f"BACKDROP_{name}", "").strip() for name in ("API_KEY", "API_KEY_BLOCK")):
            raise ConfigError("no API key: set BACKDROP_API_KEY, or BACKDROP_API_KEY_BLOCK to a Prefect Secret block "
                              "name, or try it on the sandbox with --sandbox")
        confine_output(params["out"])
        read_rows(params["csv"], prompt_override=params.get("prompt"),
                  template_override=params.get("template_id"))
    except BackdropError as exc:
        console.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        return 2

    prefect_startup.generous_startup_timeout()  # before Prefect starts its temporary server
    from flows.change_backgrounds import change_backgrounds
    from flows.progress import follow_progress

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, disable=as_json)
    bar = progress.add_task("pictures", total=None)

    def _update(done: int, total: int, _status: str) -> None:
        progress.update(bar, completed=done, total=total)

    with progress:
        if as_json:  # no bar to feed
            state = run_for_state(change_backgrounds(**params, return_state=True))
        else:  # the flow's progress events, through Prefect
            with follow_progress(change_backgrounds, _update) as followed:
                state = run_for_state(followed(**params, return_state=True))
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        console.print(f"[red]error:[/red] {result}")
        return 2 if isinstance(result, BackdropError) and result.code in ("bad_csv", "config_error") else 1
    summary: dict[str, Any] = result
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        console.print(summary_table(summary))
    ok = summary["failed"] == 0 and summary["pending_reconcile"] == 0 and (
        summary["dry_run"] or summary["succeeded"] == summary["rows"])
    return 0 if ok else 1



@documented(BatchParameters, style="numpy")  # the flow's parameters' help, from backdrop/params.py
def run(
    csv: str,
    /,
    *,
    out: str = "backdrop-output",
    sandbox: bool = False,
    time_scale: float = 20.0,
    prompt: str = "",
    template_id: str = "",
    input_mode: InputMode = "upload",
    concurrency: int = 8,
    max_units: int = NO_CAP,
    dry_run: bool = False,
    feature: FeatureName = "default",
    fit_inputs: bool = False,
    json_output: bool = False,
    verbose: bool = False,
) -> int:
    """Change the backgrounds of every picture in CSV; write pictures and a report to --out.

    Parameters
    ----------
    sandbox
        Start the local sandbox on a free loopback port and run against it (no real API, no cost).
    time_scale
        With --sandbox: how much faster than the vendor the sandbox runs.
    json_output
        Print only the summary, as JSON, on standard output.
    verbose
        Show Prefect's INFO logs.
    """
    quiet_prefect(verbose)
    params = dict(csv=csv, out=out, prompt=prompt, template_id=template_id, input_mode=input_mode,
                  concurrency=concurrency, max_units=max_units, dry_run=dry_run, feature=feature,
                  fit_inputs=fit_inputs)
    if not sandbox:
        return _run_flow(params, as_json=json_output)
    with sandbox_process(time_scale) as url:
        sandbox_env(url, time_scale)
        if not json_output:
            console.print(f"sandbox: {url} (simulated API, no cost)")
        return _run_flow(params, as_json=json_output)


def demo(*, out: str = "demo-output", time_scale: float = 20.0, verbose: bool = False) -> int:
    """Run the bundled batch of product photos on the sandbox and say where the results are."""
    csv = resources.files("backdrop") / "demo" / "products.csv"
    code = run(str(csv), out=out, sandbox=True, time_scale=time_scale, verbose=verbose)
    out_dir = Path(out).resolve()
    console.print(f"pictures and report in {out_dir}: open {out_dir / 'gallery.html'} to look at them "
                  "(also report.csv, report.parquet, summary.json, contact-sheet.png)")
    return code
