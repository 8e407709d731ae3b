"""`backdrop`: run a batch, run the demo, serve the sandbox.

Exit codes: 0 every row succeeded (or a dry run), 1 some rows did not, 2 bad usage, a bad CSV, or Prefect
not starting.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cyclopts import App
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from backdrop.cli import startup as prefect_startup

app = App(name="backdrop", help="Bulk background changes for product photos (Perfect Corp API, Prefect).")
console = Console(stderr=True)

SANDBOX_KEY = "sandbox-key"


def _quiet_prefect(verbose: bool) -> None:
    # Set before Prefect is imported: a batch is thousands of task runs, too many INFO lines for a terminal.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@contextmanager
def sandbox_process(time_scale: float) -> Iterator[str]:
    """Start the sandbox as its own process on a free loopback port; yield its base URL."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "url"
        proc = subprocess.Popen(
            [sys.executable, "-m", "backdrop.sandbox", "--host", "127.0.0.1", "--port", "0",
             "--time-scale", str(time_scale), "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not (ready.exists() and ready.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read() if proc.stderr else ""
                    raise RuntimeError(f"the sandbox did not start: {err[-2000:]}")
                time.sleep(0.05)
            yield ready.read_text().strip()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _sandbox_env(url: str, time_scale: float) -> None:
    """Point the pipeline at the sandbox, with poll timings in the sandbox's (scaled) time."""
    os.environ["BACKDROP_API_URL"] = url
    os.environ["BACKDROP_API_KEY"] = SANDBOX_KEY
    os.environ.pop("BACKDROP_API_KEY_BLOCK", None)
    # Its results come from its own host (always allowed); pictures it serves come from its own address, which the
    # fetch fence refuses like any loopback address unless opened: open that one address, nothing more.
    host = urlsplit(url).hostname or "127.0.0.1"
    allowed = os.environ.get("BACKDROP_FETCH_ALLOW_NETWORKS", "")
    os.environ["BACKDROP_FETCH_ALLOW_NETWORKS"] = ",".join(filter(None, (allowed, host)))
    for name, vendor_seconds in (("POLL_FIRST_SECONDS", 8.0), ("POLL_INTERVAL_SECONDS", 2.0),
                                 ("POLL_MAX_INTERVAL_SECONDS", 30.0)):
        os.environ.setdefault(f"BACKDROP_{name}", str(vendor_seconds / time_scale))


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Backdrop batch", show_header=False)
    for label, key in (("rows", "rows"), ("succeeded", "succeeded"), ("failed", "failed"),
                       ("skipped", "skipped"), ("pending reconcile", "pending_reconcile"),
                       ("reused (paid before)", "reused"), ("units charged", "units_charged")):
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


def _run_flow(params: dict[str, Any], *, as_json: bool) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from backdrop.errors import BackdropError
    from backdrop.pipeline.inputs import read_rows
    from backdrop.roots import confine_output

    try:  # a bad CSV, or a CSV or output folder outside the roots, fails fast, before Prefect starts
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
            state = asyncio.run(change_backgrounds(**params, return_state=True))
        else:  # the flow's progress events, through Prefect
            with follow_progress(change_backgrounds, _update) as followed:
                state = asyncio.run(followed(**params, return_state=True))
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        console.print(f"[red]error:[/red] {result}")
        return 2 if isinstance(result, BackdropError) and result.code in ("bad_csv", "config_error") else 1
    summary: dict[str, Any] = result
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        console.print(_summary_table(summary))
    ok = summary["failed"] == 0 and summary["pending_reconcile"] == 0 and (
        summary["dry_run"] or summary["succeeded"] == summary["rows"])
    return 0 if ok else 1


@app.command
def run(
    csv: str,
    /,
    *,
    out: str = "backdrop-output",
    sandbox: bool = False,
    time_scale: float = 20.0,
    prompt: str | None = None,
    template_id: str | None = None,
    input_mode: Literal["upload", "url", "auto"] = "upload",
    concurrency: int = 8,
    max_units: int | None = None,
    dry_run: bool = False,
    feature: Literal["bg-replace-v2", "bg-replace"] | None = None,
    fit_inputs: bool = False,
    json_output: bool = False,
    verbose: bool = False,
) -> int:
    """Change the backgrounds of every picture in CSV; write pictures and a report to --out.

    Parameters
    ----------
    csv
        CSV path or URL with columns image_url and prompt (optional: id, template_id, any others).
    out
        Output folder for the pictures, report.csv, report.parquet and summary.json.
    sandbox
        Start the local sandbox on a free loopback port and run against it (no real API, no cost).
    time_scale
        With --sandbox: how much faster than the vendor the sandbox runs.
    prompt
        One prompt for every row, replacing the CSV's.
    template_id
        One template for every row (feature bg-replace).
    input_mode
        upload: send the bytes; url: pass http(s) URLs to the API; auto: URLs the vendor can reach.
    concurrency
        Pictures in flight at once.
    max_units
        Unit budget for this run; no create may exceed it.
    dry_run
        Check every row and estimate units and cost; create nothing.
    feature
        Feature slug (default BACKDROP_FEATURE, else bg-replace-v2).
    fit_inputs
        Downscale pictures over 4096 px and convert webp/gif/bmp/tiff instead of failing them.
    json_output
        Print only the summary, as JSON, on standard output.
    verbose
        Show Prefect's INFO logs.
    """
    _quiet_prefect(verbose)
    params = dict(csv=csv, out=out, prompt=prompt, template_id=template_id, input_mode=input_mode,
                  concurrency=concurrency, max_units=max_units, dry_run=dry_run, feature=feature,
                  fit_inputs=fit_inputs)
    if not sandbox:
        return _run_flow(params, as_json=json_output)
    with sandbox_process(time_scale) as url:
        _sandbox_env(url, time_scale)
        if not json_output:
            console.print(f"sandbox: {url} (simulated API, no cost)")
        return _run_flow(params, as_json=json_output)


@app.command
def demo(*, out: str = "demo-output", time_scale: float = 20.0, verbose: bool = False) -> int:
    """Run the bundled batch of product photos on the sandbox and say where the results are."""
    csv = resources.files("backdrop") / "demo" / "products.csv"
    code = run(str(csv), out=out, sandbox=True, time_scale=time_scale, verbose=verbose)
    out_dir = Path(out).resolve()
    console.print(f"pictures and report in {out_dir}: open {out_dir / 'gallery.html'} to look at them "
                  "(also report.csv, report.parquet, summary.json, contact-sheet.png)")
    return code


@app.command
def sandbox(*, host: str = "127.0.0.1", port: int = 8765, time_scale: float = 1.0, profile: str | None = None,
            allow_remote: bool = False) -> int:
    """Serve the sandbox (a local emulator of the API) in the foreground.

    Parameters
    ----------
    host
        Address to bind (keep it on loopback); any other address needs --allow-remote.
    port
        Port to listen on (0 picks a free one).
    time_scale
        How much faster than the vendor the sandbox runs (1 = real time).
    profile
        Vendor-variant profile: default, oldest-first, resized, png, short-window, shifted-clock or hostile
        (see backdrop/sandbox/README.md). Default: $BACKDROP_SANDBOX_PROFILE, else none.
    allow_remote
        Bind a non-loopback --host anyway: strangers could then reach it, so every /_sandbox/ route needs an
        admin token ($BACKDROP_SANDBOX_ADMIN_TOKEN, else a random one printed once at start).
    """
    return subprocess.call([sys.executable, "-m", "backdrop.sandbox", "--host", host, "--port", str(port),
                            "--time-scale", str(time_scale), *(["--profile", profile] if profile else []),
                            *(["--allow-remote"] if allow_remote else [])])


def _cost_tables(summary: dict[str, Any]) -> list[Table]:
    cur, t = summary["currency"], summary["totals"]
    head = Table(title=f"Backdrop cost {summary['since']} to {summary['until']} (UTC, last day excluded)",
                 show_header=False)
    for key in ("created", "succeeded", "failed", "pending", "units"):
        head.add_row({"succeeded": "succeeded (charged)", "failed": "failed (not charged)"}.get(key, key),
                     str(t[key]))
    head.add_row("cost", f"{t['cost']:.2f} {cur}")
    if (recon := summary.get("reconciliation")) is not None:
        head.add_row("vendor units", f"{recon['vendor_units']:g}")
    if summary.get("balance") is not None:
        head.add_row("balance now", f"{summary['balance']:g} units")
    if (budget := summary.get("budget")) is not None:
        head.add_row("budget", f"{'[red]OVER[/red] ' if budget['alert'] else ''}{budget['used_units']} "
                               f"of {budget['budget_units']} units this {budget['period']} "
                               f"({budget['share']:.0%}), projected {budget['projected_units']:g} "
                               f"({budget['projected_share']:.0%})")
    tables = [head]
    counts = ["created", "succeeded", "failed", "pending", "units", "cost"]
    for title, key, rows in (("Per day", "day", [r for r in summary["daily"] if r["created"] or r["units"]]),
                             ("Per deployment", "deployment", summary["deployments"]),
                             ("Per run", "run_id", summary["runs"][:25])):
        table = Table(title=title)
        for col in (key, *counts):
            table.add_column(col, justify="left" if col == key else "right")
        for r in rows:
            table.add_row(str(r[key]), *(f"{r[c]:g}" if isinstance(r[c], float) else str(r[c])
                                         for c in counts))
        tables.append(table)
    if recon:
        for title, rows in (
                ("Charged by the vendor, unknown to the ledger", recon["unknown_to_ledger"]),
                ("Charged in the ledger, absent from the vendor's history", recon["missing_at_vendor"])):
            if rows:
                table = Table(title=title)
                for col in rows[0]:
                    table.add_column(col)
                for r in rows:
                    table.add_row(*(str(v) for v in r.values()))
                tables.append(table)
    return tables


@app.command
def cost(*, since: str | None = None, until: str | None = None, out: str = "cost-output",
         json_output: bool = False, verbose: bool = False) -> int:
    """Report units and cost over a period from the ledger and the vendor's credit history; check the budget.

    Exit codes: 0 within budget (or no budget), 1 over the budget's alarm threshold, 2 bad usage or an error.

    Parameters
    ----------
    since
        First day, YYYY-MM-DD (UTC); default the start of the budget period (BACKDROP_BUDGET_PERIOD).
    until
        Day after the last, YYYY-MM-DD (UTC, excluded); default tomorrow.
    out
        Folder for the FOCUS and daily tables (CSV, Parquet), the chart (PNG) and cost_summary.json.
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
    _quiet_prefect(verbose)
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
        for table in _cost_tables(summary):
            console.print(table)
        for kind, path in summary["files"].items():
            console.print(f"{kind}: {path}", soft_wrap=True, highlight=False)
        if summary["over_budget"]:
            console.print(f"[red]over budget:[/red] {state.message}")
    return 1 if summary["over_budget"] else 0


@app.command
def reconcile(key: str | None = None, *, task: str | None = None, not_created: bool = False,
              recreate: bool = False) -> int:
    """List the pictures left pending_reconcile, or settle one by hand. Reads and writes only the ledger.

    A lost create (its answer never came) stays pending while the vendor's credit history cannot tell whether
    it made a task. Look at its candidate charges (the gallery shows their pictures), then record what you
    found; the next run acts on it and never pays twice on a guess.

    Parameters
    ----------
    key
        The first characters of the picture's content key, as listed; none: list the pending pictures.
    task
        This charge (a task id among the candidates) is the picture's: the next run fetches it, pays nothing.
    not_created
        The lost create made nothing: the next run creates the picture.
    recreate
        Create it again although it may have been paid (flagged possible_duplicate), or because its paid
        output is lost.
    """
    from backdrop.pipeline import reconcile as settle
    from backdrop.settings import BackdropSettings
    from backdrop.store.ledger import Ledger, default_ledger_url
    from tasks.runtime import environment_id

    settings = BackdropSettings()
    ledger = Ledger(settings.ledger_url or default_ledger_url())
    env = environment_id(settings)
    if key is None:
        rows = settle.pending_rows(ledger, env)
        table = Table(title=f"{len(rows)} pictures pending (account {settings.account})")
        for col in ("key", "row", "prompt or template", "since", "candidate charges"):
            table.add_column(col)
        for e in rows:
            cands = (e.error_message or "").removeprefix("candidate charges: ") if "candidate" in (
                e.error_message or "") else "none seen yet"
            table.add_row(e.content_key[:12], e.row_id or "", e.prompt or e.template_id or "",
                          e.created_at.isoformat(timespec="seconds"), cands)
        Console().print(table)
        return 0
    chosen = [task is not None, not_created, recreate]
    if sum(chosen) != 1:
        console.print("[red]error:[/red] give exactly one of --task, --not-created, --recreate")
        return 2
    decision: settle.Decision = "task" if task else "not_created" if not_created else "recreate"
    try:
        entry = settle.decide(ledger, env, key, decision, task_id=task)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    console.print(f"{entry.content_key[:12]}: {entry.status} ({entry.error_code}); the next run acts on it")
    return 0


def main() -> None:
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
