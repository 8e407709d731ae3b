"""The batch flow: a CSV of pictures and prompts in; new pictures, a report and its cost out.

    params -> preflight (every unique source) -> plan (group rows by content, settle lost creates)
    -> rows: each picture, bounded by `concurrency` (flows/picture.py: reuse, resume, follow or create)
    -> report (CSV, Parquet, summary JSON; figures from backdrop/report/metrics.py), gallery
    -> artifacts -> final state

The phases before the report are in `flows/batch_run.py`; the run's clients, poll planner and webhook receiver
in `tasks/resources.py`, opened here and closed when the flow ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.context import get_run_context
from prefect.runtime import deployment as runtime_deployment
from prefect.states import Completed

from backdrop import identity
from backdrop.errors import InputRejected
from backdrop.fences import redact_url
from backdrop.gallery import GalleryFiles, write_gallery
from backdrop.identity import environment_id, key_id
from backdrop.params import (
    NO_CAP,
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
    budget_cap,
    documented,
    feature_override,
)
from backdrop.pipeline import plan
from backdrop.pipeline.budget import Budget
from backdrop.pipeline.feature import FeatureChoice, choose_feature, reject_unsupported_templates
from backdrop.pipeline.inputs import InputRow, read_rows
from backdrop.pipeline.lifecycle import RowLifecycle
from backdrop.pipeline.outcomes import copy_duplicate_outputs
from backdrop.pipeline.preflight import PreparedInput
from backdrop.pipeline.reconcile import settle_in_run
from backdrop.pipeline.webhooks import WebhookReceiver
from backdrop.report import metrics
from backdrop.report.markdown import failures_table, summary_markdown
from backdrop.report.rows import row_outcomes
from backdrop.report.table import build_report, summarize, write_report, write_summary
from backdrop.roots import confine_output
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger
from backdrop.store.migrate import move_legacy_rows
from flows.batch_run import PictureRun, Results, best_effort, preflight_sources, settle_lost
from flows.events import FAILURES_EVENT, emit_run_event, warn_each_failed_row
from flows.naming import batch_run_name
from flows.picture import PrefectSteps
from tasks.reconcile import vendor_units_for
from tasks.resources import RunResources, run_resources


@dataclass
class _Report:
    """What the report of this run is made from (rows, plan, settings), whatever stopped it."""

    settings: BackdropSettings
    csv: str
    out_dir: Path
    run_id: str
    dry_run: bool
    rows: list[InputRow]
    rejected: dict[int, InputRejected]
    names: dict[int, Path]
    unique_pictures: int
    feature: FeatureChoice
    webhooks_fallback: str | None = None

    def build(self, results: Results, **extra: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
        s = self.settings
        df = build_report(row_outcomes(self.rows, self.rejected, results, copy_duplicate_outputs(results, self.names),
                                       s.unit_price))
        summary = summarize(df, unit_price=s.unit_price, currency=s.currency, units_per_task=s.units_per_task)
        summary.update(csv=redact_url(self.csv), out=str(self.out_dir), feature=self.feature.slug,
                       feature_note=self.feature.note, dry_run=self.dry_run,
                       run_id=self.run_id, unique_pictures=self.unique_pictures,
                       webhooks_fallback=self.webhooks_fallback, **extra)
        return df, summary


@flow(name="change-backgrounds", flow_run_name=batch_run_name, log_prints=False)
@documented(BatchParameters, style="google")  # the form's descriptions (Args), from backdrop/params.py
async def change_backgrounds(
    csv: Csv,
    out: BatchOut = "backdrop-output",
    prompt: Prompt = "",
    template_id: TemplateId = "",
    input_mode: InputMode = "upload",
    concurrency: Concurrency = 8,
    max_units: MaxUnits = NO_CAP,
    dry_run: DryRun = False,
    feature: Feature = "default",
    fit_inputs: FitInputs = False,
) -> Any:
    """Change the background of every picture in a CSV and report what it cost."""
    async with run_resources() as res:
        # params
        logger = get_run_logger()
        settings = res.settings(feature_override(feature))  # fails fast, and clearly, without a key
        env, key = environment_id(settings), key_id(settings)
        out_dir = confine_output(out, settings)  # a parameter: refused outside the output roots, before anything
        ledger_url = settings.effective_ledger_url()
        ledger = Ledger(ledger_url)
        if moved := move_legacy_rows(ledger, settings, env):  # a ledger from before the content key changed
            logger.info("moved %d ledger rows of this account to the new content keys", moved)
        ctx = get_run_context()
        run_id = str(ctx.flow_run.id) if ctx.flow_run else "local"  # type: ignore[union-attr]
        rows, base_dir = read_rows(csv, prompt_override=prompt, template_override=template_id)
        # the slug (BACKDROP_FEATURE=auto: the one the account's feature-cost list names), before any upload
        choice = await choose_feature(settings, res.client(settings).feature_costs, dry_run=dry_run)
        settings = choice.settings
        if choice.note:
            logger.warning("feature: %s", choice.note)
        run_started = datetime.now(UTC)
        logger.info("%d rows from %s -> %s (feature %s, %s)", len(rows), redact_url(csv), out_dir,
                    settings.feature, "dry run" if dry_run else f"concurrency {concurrency}")

        # preflight -> plan
        prepared = await preflight_sources(logger, rows, base_dir, out_dir / ".backdrop" / "inputs", fit_inputs,
                                           concurrency)

        def key_fn(p: PreparedInput, row: Any, task_type: str) -> str:
            return identity.content_key(image_sha256=p.sha256, prompt=row.prompt, template_id=row.template_id,
                                     task_type=task_type, environment=env)

        items, rejected = plan.group_rows(rows, prepared, key_fn)
        items, unsupported = reject_unsupported_templates(items, choice.slug, ledger)  # before anything is paid
        rejected.update(unsupported)
        create_window = 2 * (settings.connect_timeout_seconds + settings.read_timeout_seconds)
        settle = settle_lost(settings, ledger_url, env, key, items, out_dir, create_window)
        if not dry_run and ledger.entries(environment=env, statuses=("ambiguous", "creating", "pending_reconcile")):
            settled = await settle()
            logger.info("lost creates: %d attributed to a charge, %d not created, %d pending, %d still in their "
                        "window", len(settled.attributed), len(settled.not_created), len(settled.pending),
                        len(settled.waiting))
        names = plan.output_names(rows, out_dir)
        runner = RowLifecycle(
            steps=PrefectSteps(settings=settings, environment=env, ledger_url=ledger_url, run_id=run_id, key_id=key),
            ledger=ledger, environment=env, key_id=key, run_id=run_id, deployment=runtime_deployment.name,
            input_mode=input_mode, dry_run=dry_run, budget=Budget(budget_cap(max_units), settings.units_per_task),
            names=names, units_per_task=settings.units_per_task, create_window=create_window, stop=choice.stop(),
            feature=choice.slug)
        pictures = PictureRun(runner=runner, items=items, concurrency=concurrency, ledger=ledger, run_id=run_id,
                              units_per_task=settings.units_per_task, logger=logger, rows_total=len(rows))
        await pictures.open_progress()
        reporting = _Report(settings=settings, csv=csv, out_dir=out_dir, run_id=run_id, dry_run=dry_run, rows=rows,
                            rejected=rejected, names=names, unique_pictures=len(items), feature=choice)

        # rows
        hooks = None if dry_run else await _start_webhooks(res, settings, reporting, logger)
        processing_started = time.monotonic()
        pictures.start()
        results: Results = []
        try:
            results = await pictures.results()
            if not dry_run:  # lost creates of this run: wait, bounded, for the vendor's records to settle them
                results = await settle_in_run(runner, results, settle, wait_seconds=settings.settle_wait_seconds,
                                              settle_after=settings.reconcile_after_seconds)
            processing_seconds = time.monotonic() - processing_started
            await pictures.finish_progress()

            # report
            df, summary = reporting.build(results)
            summary.update(metrics.run_metrics(
                df, [r for _, r in results], res.traffic(), processing_seconds=processing_seconds,
                planner=res.used_planner, webhooks=hooks.counters() if hooks is not None else None))
            summary["upload_batching"] = res.upload_batching(settings)  # "on (N=10)", or why it went off
            if dry_run:
                summary.update(metrics.dry_run_estimate([r for _, r in results],
                                                        units_per_task=settings.units_per_task,
                                                        unit_price=settings.unit_price))
            await _reconcile_with_vendor(summary, results, settings, ledger, env, run_started, logger)
            summary["files"] = write_report(df, summary, out_dir)
            # at once, before anything else can stop the run: only the charges the report carries (one it misses
            # stays for a later run's report to adopt)
            ledger.mark_reported(run_id, metrics.charged_task_ids(r for _, r in results))
        except BaseException as stop:  # cancelled, SIGTERM, a bug: report every row from what exists, then stop
            await pictures.stop()
            # the ledger's word on charges: a stop in the settle phase may have caught a picture after its charge
            results = pictures.with_charges(results or pictures.so_far(stop), stop)
            df, summary = reporting.build(results,
                                          interrupted=f"{type(stop).__name__}: {str(stop)[:200]}".rstrip(": "),
                                          processing_seconds=round(time.monotonic() - processing_started, 3))
            summary["files"] = write_report(df, summary, out_dir)
            logger.error("the run stopped (%s); report.csv lists every row, %d not attempted",
                         type(stop).__name__, summary["not_attempted"])
            with contextlib.suppress(Exception):  # left unreported, a later run's report adopts them
                ledger.mark_reported(run_id, metrics.charged_task_ids(r for _, r in results))
            raise
        finally:
            if hooks is not None:
                res.receiver = None
                await asyncio.to_thread(hooks.stop)

        # artifacts
        return await _publish(df, summary, out_dir, logger)


async def _start_webhooks(res: RunResources, settings: BackdropSettings, reporting: _Report,
                          logger: Any) -> WebhookReceiver | None:
    """The run's webhook receiver, listening; None (the run polls) without one or when the address is taken."""
    hooks = WebhookReceiver.from_settings(settings)
    if hooks is None:
        return None
    try:
        await asyncio.to_thread(hooks.start)
    except (OSError, RuntimeError) as exc:  # another run on this host holds the address: poll, pay nothing more
        reporting.webhooks_fallback = f"cannot listen on {settings.webhook_listen}: {type(exc).__name__} " \
            f"{getattr(exc, 'strerror', None) or ''}".strip() + "; this run polls"
        logger.warning("webhooks: %s (another run on this host may hold the address)", reporting.webhooks_fallback)
        return None
    res.receiver = hooks
    logger.info("receiving webhooks at %s", hooks.url)
    return hooks


async def _reconcile_with_vendor(summary: dict[str, Any], results: Results, settings: BackdropSettings,
                                 ledger: Ledger, env: str, run_started: datetime, logger: Any) -> None:
    """Add the vendor's units for every charge this report carries (taken-over ones of a killed run included:
    they were charged before it), read back from its credit history, when the settings ask for it."""
    paid_ids = metrics.charged_task_ids(r for _, r in results)
    if not (settings.reconcile_with_vendor and paid_ids):
        return
    try:  # a comparison for the reader: the vendor's history (or the ledger) out of reach never costs the report
        since = min([run_started, *(e.created_at for e in ledger.entries(environment=env) if e.task_id in paid_ids)])
        vendor = await vendor_units_for(settings.feature, paid_ids, since)
    except Exception as exc:  # noqa: BLE001
        logger.warning("reading the vendor's credit history failed: %s: %s", type(exc).__name__, str(exc)[:200])
        vendor = None
    summary.update(metrics.vendor_figures(vendor, summary["units_charged"]))
    if vendor is None:
        logger.warning("the vendor's credit history could not be read back to this run's start")
    elif summary["units_difference"]:
        logger.warning("the vendor charged %s units for this run's tasks, the report says %s",
                       vendor, summary["units_charged"])


async def _publish(df: pd.DataFrame, summary: dict[str, Any], out_dir: Path, logger: Any) -> Any:
    """The gallery, summary.json again and the artifacts (each best effort), then the run's final state."""
    gallery: GalleryFiles | None = None
    try:  # best effort: the report is written already, and a gallery that fails never costs it
        gallery = await asyncio.to_thread(write_gallery, df, summary, out_dir)  # Pillow work, off the loop
    except Exception as exc:  # noqa: BLE001
        summary["gallery_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        logger.warning("the gallery could not be written (%s); the report is complete without it",
                       summary["gallery_error"])
    if gallery is not None:
        summary["files"].update(gallery.as_dict())
    write_summary(summary, out_dir)  # again, now listing the gallery too
    # artifacts are best effort too: report.csv and summary.json are written whatever Prefect's API answers
    # the pictures travel inside the markdown (a browser refuses file:// links from the Prefect UI)
    pictures = f"\n\n{gallery.artifact_markdown}" if gallery is not None else ""
    await best_effort(logger, "the summary artifact", acreate_markdown_artifact(
        summary_markdown(summary) + pictures, key="backdrop-summary", description="Backdrop batch summary"))
    if gallery is not None:
        await best_effort(logger, "the gallery artifact", acreate_markdown_artifact(
            f"Open the gallery (every row, before and after) from a file browser or a terminal:\n\n"
            f"    {gallery.html}\n", key="backdrop-gallery", description=f"gallery.html in {out_dir}"))
    failed_rows = failures_table(df)
    if failed_rows:
        await best_effort(logger, "the failures artifact", acreate_table_artifact(
            failed_rows, key="backdrop-failures", description="Rows that did not succeed"))
    logger.info("done: %(succeeded)d succeeded, %(failed)d failed, %(skipped)d skipped, "
                "%(pending_reconcile)d pending; %(units_charged)d units", summary)
    warn_each_failed_row(df, logger)
    bad = summary["failed"] + summary["pending_reconcile"] + summary["not_attempted"]
    if bad:
        emit_run_event(FAILURES_EVENT, summary["run_id"], {
            "rows": summary["rows"], "failed": summary["failed"], "pending": summary["pending_reconcile"],
            "not_attempted": summary["not_attempted"], "units_charged": summary["units_charged"],
            "csv": summary["csv"]})
        return Completed(name="Completed with failures", data=summary,
                         message=f"{bad} of {summary['rows']} rows did not succeed")
    return summary
