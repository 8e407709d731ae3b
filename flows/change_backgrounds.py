"""The batch flow: a CSV of pictures and prompts in; new pictures, a report and its cost out.

    preflight (every unique source) -> group rows by content -> settle lost creates
    -> each picture, bounded by `concurrency` (flows/picture.py: reuse, resume, follow or create)
    -> report (CSV, Parquet, summary JSON), gallery -> artifacts -> final state
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_link_artifact,
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.context import get_run_context
from prefect.runtime import deployment as runtime_deployment
from prefect.states import Completed

from backdrop import identity
from backdrop.errors import InputRejected
from backdrop.fences import redact_url
from backdrop.gallery import write_gallery
from backdrop.params import (
    BatchOut,
    BatchParameters,
    Concurrency,
    Csv,
    DryRun,
    Feature,
    FitInputs,
    InputMode,
    MaxUnits,
    Prompt,
    TemplateId,
    documented,
)
from backdrop.pipeline import plan
from backdrop.pipeline.budget import Budget
from backdrop.pipeline.inputs import read_rows
from backdrop.pipeline.lifecycle import RowLifecycle
from backdrop.pipeline.outcomes import ItemResult, copy_duplicate_outputs
from backdrop.pipeline.plan import WorkItem
from backdrop.pipeline.preflight import PreparedInput
from backdrop.pipeline.reconcile import settle_in_run
from backdrop.pipeline.webhooks import WebhookReceiver
from backdrop.report.markdown import failures_table, summary_markdown
from backdrop.report.rows import row_outcomes
from backdrop.report.table import build_report, summarize, write_report, write_summary
from backdrop.roots import confine_output
from backdrop.store.ledger import Ledger
from backdrop.store.migrate import move_legacy_rows
from flows.picture import PrefectSteps, api_requests
from tasks.preflight import preflight_input
from tasks.reconcile import settle_lost_creates, vendor_units_for
from tasks.runtime import (
    client_stats,
    close_clients,
    environment_id,
    forget_planner,
    key_id,
    set_receiver,
    settings_for,
)


def _run_name() -> str:
    params = get_run_context().flow_run.parameters  # type: ignore[union-attr]
    kind = "dry-run" if params.get("dry_run") else "batch"
    return f"{kind}-{Path(str(params.get('csv', 'input'))).stem}"


T = TypeVar("T")


@flow(name="change-backgrounds", flow_run_name=_run_name, log_prints=False)
@documented(BatchParameters, style="google")  # the form's descriptions (Args), from backdrop/params.py
async def change_backgrounds(
    csv: Csv,
    out: BatchOut = "backdrop-output",
    prompt: Prompt = None,
    template_id: TemplateId = None,
    input_mode: InputMode = "upload",
    concurrency: Concurrency = 8,
    max_units: MaxUnits = None,
    dry_run: DryRun = False,
    feature: Feature = None,
    fit_inputs: FitInputs = False,
) -> Any:
    """Change the background of every picture in a CSV and report what it cost."""
    logger = get_run_logger()
    settings = settings_for(feature)  # fails fast, and clearly, without a key
    feature_slug = settings.feature
    env = environment_id(settings)
    key = key_id(settings)
    out_dir = confine_output(out, settings)  # a parameter: refused outside the output roots, before anything
    staging = out_dir / ".backdrop" / "inputs"
    ledger_url = settings.effective_ledger_url()
    ledger = Ledger(ledger_url)
    if moved := move_legacy_rows(ledger, settings, env):  # a ledger from before the content key changed
        logger.info("moved %d ledger rows of this account to the new content keys", moved)
    ctx = get_run_context()
    run_id = str(ctx.flow_run.id) if ctx.flow_run else "local"  # type: ignore[union-attr]
    deployment_name = runtime_deployment.name  # None for a local run

    rows, base_dir = read_rows(csv, prompt_override=prompt, template_override=template_id)
    run_started = datetime.now(UTC)
    logger.info("%d rows from %s -> %s (feature %s, %s)", len(rows), redact_url(csv), out_dir, feature_slug,
                "dry run" if dry_run else f"concurrency {concurrency}")

    # Preflight every distinct source once.
    labels: dict[str, str] = {}  # each source's first row id, for its task's name: one pass, not one per source
    for r in rows:
        labels.setdefault(r.image_url, r.row_id[:40])
    sources = list(labels)
    sem = asyncio.Semaphore(max(concurrency, 4))

    async def _pre(src: str) -> tuple[str, PreparedInput | InputRejected]:
        async with sem:
            try:
                return src, await preflight_input(src, str(base_dir) if base_dir else None, str(staging),
                                                  fit_inputs, labels[src])
            except Exception as exc:  # noqa: BLE001 - the task machinery itself failed: still only this row
                logger.warning("preflight of %s failed: %s", labels[src], type(exc).__name__)
                return src, InputRejected("preflight_error", f"preflight failed ({type(exc).__name__})")

    prepared = dict(await asyncio.gather(*(_pre(s) for s in sources)))

    def key_fn(p: PreparedInput, row: Any, task_type: str) -> str:
        return identity.content_key(image_sha256=p.sha256, prompt=row.prompt, template_id=row.template_id,
                                 task_type=task_type, environment=env)

    items, rejected = plan.group_rows(rows, prepared, key_fn)
    staged = {i.prepared.sha256: str(i.prepared.path) for i in items}
    create_window = 2 * (settings.connect_timeout_seconds + settings.read_timeout_seconds)

    async def settle() -> Any:
        return await settle_lost_creates(feature_slug, ledger_url, env, key or "", staged, create_window,
                                         str(out_dir / ".backdrop" / "candidates"))

    if not dry_run and ledger.entries(environment=env, statuses=("ambiguous", "creating", "pending_reconcile")):
        settled = await settle()
        logger.info("lost creates: %d attributed to a charge, %d not created, %d pending, %d still in their window",
                    len(settled.attributed), len(settled.not_created), len(settled.pending), len(settled.waiting))
    names = plan.output_names(rows, out_dir)
    runner = RowLifecycle(
        steps=PrefectSteps(settings=settings, environment=env, ledger_url=ledger_url, run_id=run_id, key_id=key),
        ledger=ledger, environment=env, key_id=key, run_id=run_id, deployment=deployment_name,
        input_mode=input_mode, dry_run=dry_run, budget=Budget(max_units, settings.units_per_task), names=names,
        units_per_task=settings.units_per_task, create_window=create_window)
    total, done = len(items), 0
    progress_id = await _best_effort(logger, "the progress artifact", acreate_progress_artifact(
        0.0, key="backdrop-progress", description=f"pictures done of {total}"))
    step = max(1, total // 20)
    batch_sem = asyncio.Semaphore(concurrency)
    finished: dict[int, tuple[WorkItem, ItemResult]] = {}  # by item index: what a stopped run still reports
    in_flight: set[int] = set()

    async def _one(n: int, item: WorkItem) -> tuple[WorkItem, ItemResult]:
        nonlocal done
        async with batch_sem:
            in_flight.add(n)
            result = await runner.run(item)
        finished[n] = (item, result)
        in_flight.discard(n)
        done += 1
        for listener in plan.progress_listeners:
            listener(done, total, result.status)
        if progress_id is not None and (done % step == 0 or done == total):
            await _best_effort(logger, "the progress artifact",
                               aupdate_progress_artifact(progress_id, 100.0 * done / max(total, 1)))
        return item, result

    def unfinished(n: int, item: WorkItem, why: BaseException) -> ItemResult:
        """A picture the stopped run did not finish: not_attempted; one in flight keeps the task and the charge
        the ledger holds for this run (the next run resumes that task, never pays for it again)."""
        reason = f"the run stopped ({type(why).__name__}) before this picture"
        if n not in in_flight:
            return ItemResult(status="not_attempted", error_code="not_reached", message=f"{reason} was started")
        try:
            entry = ledger.latest(item.key)
        except Exception:  # noqa: BLE001 - the ledger is out of reach: report the row without its task
            entry = None
        charged = entry is not None and entry.charged_run_id == run_id
        return ItemResult(status="not_attempted", error_code="interrupted", message=f"{reason} had finished",
                          task_id=entry.task_id if entry else None, units=settings.units_per_task if charged else 0,
                          note="the ledger keeps its task: the next run resumes it without paying again"
                          if entry and entry.task_id else None)

    def report(results: list[tuple[WorkItem, ItemResult]], **extra: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
        outcomes = row_outcomes(rows, rejected, results, copy_duplicate_outputs(results, names), settings.unit_price)
        df = build_report(outcomes)
        summary = summarize(df, unit_price=settings.unit_price, currency=settings.currency,
                            units_per_task=settings.units_per_task)
        summary.update(csv=redact_url(csv), out=str(out_dir), feature=feature_slug, dry_run=dry_run, run_id=run_id,
                       unique_pictures=len(items), webhooks_fallback=webhooks_fallback, **extra)
        return df, summary

    hooks = WebhookReceiver.from_settings(settings) if not dry_run else None
    webhooks_fallback: str | None = None
    if hooks is not None:
        try:
            await asyncio.to_thread(hooks.start)
        except (OSError, RuntimeError) as exc:  # another run on this host holds the address: poll, pay nothing more
            hooks, webhooks_fallback = None, f"cannot listen on {settings.webhook_listen}: {type(exc).__name__} " \
                f"{getattr(exc, 'strerror', None) or ''}".strip() + "; this run polls"
            logger.warning("webhooks: %s (another run on this host may hold the address)", webhooks_fallback)
        else:
            set_receiver(hooks)
            logger.info("receiving webhooks at %s", hooks.url)
    processing_started = time.monotonic()
    tasks = [asyncio.create_task(_one(n, i)) for n, i in enumerate(items)]
    results: list[tuple[WorkItem, ItemResult]] = []
    try:
        results = list(await asyncio.gather(*tasks))
        if not dry_run:  # lost creates of this run: wait, bounded, for the vendor's records to settle them
            results = await settle_in_run(runner, results, settle, wait_seconds=settings.settle_wait_seconds,
                                          settle_after=settings.reconcile_after_seconds)
        processing_seconds = time.monotonic() - processing_started
        traffic = client_stats()
    except BaseException as stop:  # cancelled, SIGTERM, a bug: report every row from what exists, then stop
        for t in tasks:
            t.cancel()
        try:  # let the pictures in flight unwind (their ledger writes) before reading what they left
            await asyncio.wait(tasks, timeout=10)
        except BaseException:  # noqa: BLE001 - cancelled again: report what there is now
            pass
        if not results:
            results = [finished.get(n) or (item, unfinished(n, item, stop)) for n, item in enumerate(items)]
        df, summary = report(results, interrupted=f"{type(stop).__name__}: {str(stop)[:200]}".rstrip(": "),
                             processing_seconds=round(time.monotonic() - processing_started, 3))
        summary["files"] = write_report(df, summary, out_dir)
        logger.error("the run stopped (%s); report.csv lists every row, %d not attempted",
                     type(stop).__name__, summary["not_attempted"])
        try:
            ledger.mark_reported(run_id)  # the charges this run recorded are in that report
        except Exception:  # noqa: BLE001 - left unreported, a later run's report adopts them
            pass
        raise
    finally:
        await close_clients()
        planner = forget_planner(run_id)
        if hooks is not None:
            set_receiver(None)
            await asyncio.to_thread(hooks.stop)

    df, summary = report(results)
    paid = sum(1 for _, r in results if r.status == "succeeded" and not r.reused and r.task_id)
    requests_total = sum(traffic["requests"].values())  # type: ignore[union-attr]
    latencies = df.loc[(df["status"] == "succeeded") & ~df["reused"].astype(bool), "seconds"].dropna()
    summary.update(
        processing_seconds=round(processing_seconds, 3),
        requests_by_route=traffic["requests"], requests_total=requests_total,
        api_requests_per_picture=round(api_requests(traffic) / paid, 3) if paid else None,
        http_429=traffic["http_429"], retries=traffic["retries"],
        transport_errors=traffic["transport_errors"],
        latency_p50_seconds=round(float(latencies.quantile(0.5)), 3) if len(latencies) else None,
        latency_p95_seconds=round(float(latencies.quantile(0.95)), 3) if len(latencies) else None,
        first_poll_seconds=round(planner.first_delay(), 3) if planner else None,
        **_poll_wait_bound([r.poll_gap for _, r in results if r.poll_gap is not None and not r.reused]),
        done_at_first_poll=(round(planner.done_at_first / planner.first_polls, 3)
                            if planner and planner.first_polls else None),
        webhooks=hooks.counters() if hooks is not None else None,
    )
    if dry_run:
        to_pay = sum(1 for _, r in results if r.error_code == "dry_run")
        summary["estimated_units"] = to_pay * settings.units_per_task
        summary["estimated_cost"] = round(to_pay * settings.units_per_task * settings.unit_price, 4)
    # every charge this report carries, taken-over ones of a killed run included (they were charged before it)
    paid_ids = sorted({r.task_id for _, r in results if r.task_id and r.units})
    if settings.reconcile_with_vendor and paid_ids:
        since = min([run_started, *(e.created_at for e in ledger.entries(environment=env) if e.task_id in paid_ids)])
        vendor = await vendor_units_for(feature_slug, paid_ids, since)
        summary["vendor_units"] = vendor
        summary["units_difference"] = None if vendor is None else vendor - summary["units_charged"]
        if vendor is None:
            logger.warning("the vendor's credit history could not be read back to this run's start")
        elif summary["units_difference"]:
            logger.warning("the vendor charged %s units for this run's tasks, the report says %s",
                           vendor, summary["units_charged"])
    summary["files"] = write_report(df, summary, out_dir)
    ledger.mark_reported(run_id)  # the charges this run recorded are in its report now
    try:  # best effort: the report is written already, and a gallery that fails never costs it
        gallery = await asyncio.to_thread(write_gallery, df, summary, out_dir)  # Pillow work, off the loop
    except Exception as exc:  # noqa: BLE001
        gallery = None
        summary["gallery_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        logger.warning("the gallery could not be written (%s); the report is complete without it",
                       summary["gallery_error"])
    else:
        summary["files"].update(gallery.as_dict())
    write_summary(summary, out_dir)  # again, now listing the gallery too
    # artifacts are best effort too: report.csv and summary.json are written whatever Prefect's API answers
    await _best_effort(logger, "the summary artifact", acreate_markdown_artifact(
        summary_markdown(summary), key="backdrop-summary", description="Backdrop batch summary"))
    if gallery is not None:
        await _best_effort(logger, "the gallery artifact", acreate_link_artifact(
            gallery.html.resolve().as_uri(), link_text="Open the gallery (before and after)",
            key="backdrop-gallery", description=f"gallery.html in {out_dir}"))
    failed_rows = failures_table(df)
    if failed_rows:
        await _best_effort(logger, "the failures artifact", acreate_table_artifact(
            failed_rows, key="backdrop-failures", description="Rows that did not succeed"))
    logger.info("done: %(succeeded)d succeeded, %(failed)d failed, %(skipped)d skipped, "
                "%(pending_reconcile)d pending; %(units_charged)d units", summary)
    bad = summary["failed"] + summary["pending_reconcile"] + summary["not_attempted"]
    if bad:
        return Completed(name="Completed with failures", data=summary,
                         message=f"{bad} of {summary['rows']} rows did not succeed")
    return summary



async def _best_effort(logger: Any, what: str, call: Awaitable[T]) -> T | None:
    """Await an artifact call; a failure (Prefect's API, say) is logged, never costs the run or its report."""
    try:
        return await call
    except Exception as exc:  # noqa: BLE001
        logger.warning("%s could not be written: %s: %s", what, type(exc).__name__, str(exc)[:200])
        return None


def _poll_wait_bound(gaps: list[float]) -> dict[str, float | None]:
    """p50 and p95 of the most each finished task can have waited for the poll that found it done."""
    if not gaps:
        return {"poll_wait_bound_p50_seconds": None, "poll_wait_bound_p95_seconds": None}
    ordered = sorted(gaps)
    return {"poll_wait_bound_p50_seconds": round(ordered[len(ordered) // 2], 3),
            "poll_wait_bound_p95_seconds": round(ordered[int(0.95 * (len(ordered) - 1))], 3)}
