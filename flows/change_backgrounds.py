"""The batch flow: a CSV of pictures and prompts in; new pictures, a report and its cost out.

    preflight (every unique source) -> group rows by content -> per picture, bounded:
        ledger says done?  -> reuse the output, pay nothing
        ledger has a task? -> poll it (resume), never re-create
        else               -> reserve units -> upload -> create (ledger first) -> wait -> download
    -> report (CSV, Parquet, summary JSON) -> artifacts -> final state
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

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
from pydantic import Field

from backdrop import batch, steps
from backdrop.batch import Budget, ItemResult, WorkItem
from backdrop.errors import (
    AmbiguousCreate,
    AuthError,
    BackdropError,
    CreditInsufficiency,
    EngineError,
    InvalidTaskId,
    PollDeadlineExceeded,
)
from backdrop.gallery import write_gallery
from backdrop.inputs import read_rows
from backdrop.ledger import Ledger, default_ledger_url, owner_alive
from backdrop.outputs import copy_atomic
from backdrop.preflight import InputRejected, PreparedInput
from backdrop.report import RowOutcome, build_report, summarize, write_report, write_summary
from backdrop.summary_md import failures_table, summary_markdown
from backdrop.webhooks import WebhookReceiver
from tasks.create import create_background_task
from tasks.download import download_result
from tasks.preflight import preflight_input
from tasks.reconcile import reconcile_lost_creates, vendor_units_for
from tasks.runtime import (
    client_stats,
    close_clients,
    environment_id,
    forget_planner,
    set_receiver,
    settings_for,
)
from tasks.upload import upload_input
from tasks.wait import wait_for_result


def _run_name() -> str:
    params = get_run_context().flow_run.parameters  # type: ignore[union-attr]
    kind = "dry-run" if params.get("dry_run") else "batch"
    return f"{kind}-{Path(str(params.get('csv', 'input'))).stem}"


@flow(name="change-backgrounds", flow_run_name=_run_name, log_prints=False)
async def change_backgrounds(
    csv: str,
    out: str = "backdrop-output",
    prompt: str | None = None,
    template_id: str | None = None,
    input_mode: Literal["upload", "url", "auto"] = "upload",
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8,
    max_units: Annotated[int | None, Field(ge=0)] = None,
    dry_run: bool = False,
    feature: Literal["bg-replace-v2", "bg-replace"] | None = None,
    fit_inputs: bool = False,
) -> Any:
    """Change the background of every picture in a CSV and report what it cost.

    Args:
        csv: CSV location, a path or a URL. Columns image_url (http(s) URL or a path relative to the
            CSV's folder) and prompt; optional id and template_id; other columns pass through to the report.
        out: Output folder for the pictures, report.csv, report.parquet and summary.json.
        prompt: One prompt for every row, replacing the CSV's prompts.
        template_id: One template for every row (feature bg-replace).
        input_mode: upload sends the bytes; url passes http(s) URLs straight to the API; auto passes
            URLs the vendor can reach and uploads the rest.
        concurrency: Pictures in flight at once (the rate limiter paces requests whatever this is).
        max_units: Unit budget for this run; no task is created that could push the run over it.
        dry_run: Check every row and estimate units and cost, creating nothing.
        feature: Feature slug; empty means the BACKDROP_FEATURE setting (default bg-replace-v2).
        fit_inputs: Downscale pictures over 4096 px and convert webp/gif/bmp/tiff instead of failing them.
    """
    logger = get_run_logger()
    settings = settings_for(feature)  # fails fast, and clearly, without a key
    feature_slug = settings.feature
    env = environment_id(settings)
    out_dir = Path(out).expanduser().resolve()
    staging = out_dir / ".backdrop" / "inputs"
    ledger_url = settings.ledger_url or default_ledger_url()
    ledger = Ledger(ledger_url)
    ctx = get_run_context()
    run_id = str(ctx.flow_run.id) if ctx.flow_run else "local"  # type: ignore[union-attr]
    deployment_name = runtime_deployment.name  # None for a local run

    rows, base_dir = read_rows(csv, prompt_override=prompt, template_override=template_id)
    run_started = datetime.now(UTC)
    logger.info("%d rows from %s -> %s (feature %s, %s)", len(rows), csv, out_dir, feature_slug,
                "dry run" if dry_run else f"concurrency {concurrency}")

    # Preflight every distinct source once.
    sources = list(dict.fromkeys(r.image_url for r in rows))
    sem = asyncio.Semaphore(max(concurrency, 4))

    async def _pre(src: str) -> tuple[str, PreparedInput | InputRejected]:
        async with sem:
            label = next(r.row_id for r in rows if r.image_url == src)[:40]
            return src, await preflight_input(src, str(base_dir) if base_dir else None, str(staging),
                                              fit_inputs, label)

    prepared = dict(await asyncio.gather(*(_pre(s) for s in sources)))

    def key_fn(p: PreparedInput, row: Any, task_type: str) -> str:
        return steps.content_key(image_sha256=p.sha256, prompt=row.prompt, template_id=row.template_id,
                                 task_type=task_type, environment=env)

    items, rejected = batch.group_rows(rows, prepared, key_fn)
    if not dry_run and ledger.entries(environment=env, statuses=("ambiguous", "creating")):
        staged = {i.prepared.sha256: i.prepared.path for i in items}
        settled = await reconcile_lost_creates(feature_slug, ledger_url, env, staged)
        logger.info("lost creates: %d matched to a charge, %d not created, %d unresolved, %d re-created",
                    len(settled.matched), len(settled.not_created), len(settled.unresolved),
                    len(settled.recreate))
    names = batch.output_names(rows, out_dir)
    budget = Budget(max_units, settings.units_per_task)
    stop: dict[str, str] = {}
    total, done = len(items), 0
    progress_id = await acreate_progress_artifact(0.0, key="backdrop-progress",
                                                  description=f"pictures done of {total}")
    step = max(1, total // 20)

    async def _one(item: WorkItem) -> tuple[WorkItem, ItemResult]:
        nonlocal done
        async with batch_sem:
            started, t0 = batch.now_iso(), time.monotonic()
            trace = {"stage": "ledger"}
            try:
                result = await _process(item, trace)
            except BackdropError as exc:  # the row boundary: any domain error becomes this row's outcome
                result = _failure(exc, stage=trace["stage"])
            except Exception as exc:  # noqa: BLE001 - the one broad catch: no row may sink the batch
                logger.exception("row %s: unexpected error at %s", item.primary.row_id, trace["stage"])
                result = _unexpected(item, exc, trace["stage"])
            result.started_at, result.finished_at = started, batch.now_iso()
            result.seconds = round(time.monotonic() - t0, 3)
        done += 1
        for listener in batch.progress_listeners:
            listener(done, total, result.status)
        if done % step == 0 or done == total:
            await aupdate_progress_artifact(progress_id, 100.0 * done / max(total, 1))
        return item, result

    async def _process(item: WorkItem, trace: dict[str, str]) -> ItemResult:
        dest = names[item.primary.line]
        entry = ledger.latest(item.key)
        if entry and entry.status == "succeeded":
            reused = _reuse(entry, dest)
            if reused:
                return reused
        if entry and entry.task_id and entry.status in ("created", "pending_reconcile", "succeeded"):
            return await _finish(item, entry.attempt, entry.task_id, dest, trace, attempts=0, first_delay=0.0)
        if entry and entry.status == "creating" and _fresh(entry):
            return await _follow(item, entry.attempt, dest, trace)  # another run is creating it now
        if entry and entry.status in ("creating", "ambiguous"):
            return ItemResult(status="pending_reconcile", stage="create", error_code="ambiguous_create",
                              message="an earlier create got no answer; reconcile before paying again",
                              attempts=0)
        attempt = entry.attempt + 1 if entry else 1
        duplicate_risk = bool(entry and entry.error_code == "ambiguous_recreated")
        if dry_run:
            return ItemResult(status="skipped", error_code="dry_run",
                              note=f"would cost {settings.units_per_task} units")
        if stop:
            code, why = next(iter(stop.items()))
            return ItemResult(status="skipped", error_code=code, message=f"not attempted: {why}")
        if not await budget.reserve():
            return ItemResult(status="skipped", error_code="budget_exhausted",
                              message=f"max_units={max_units} reached; not attempted")
        charged = False
        try:
            trace["stage"] = "upload"
            file_id, file_url = await _source(item)
            if not ledger.claim(item.key, attempt, run_id=run_id, row_id=item.primary.row_id, environment=env,
                                deployment=deployment_name,
                                image_sha256=item.prepared.sha256, prompt=item.prompt,
                                template_id=item.template_id):
                return await _follow(item, attempt, dest, trace)
            trace["stage"] = "create"
            task_id = await create_background_task(
                item.key, attempt, feature_slug, ledger_url, file_id, file_url, item.prompt,
                item.template_id, item.task_type)
            result = await _finish(item, attempt, task_id, dest, trace, attempts=1)
            charged = result.units > 0
            if duplicate_risk:
                result.possible_duplicate = True
                result.note = "; ".join(filter(None, [result.note, "re-created after a lost create: "
                                                      "the vendor may have charged twice"]))
            return result
        finally:
            await budget.settle(charged)

    create_window = 2 * (settings.connect_timeout_seconds + settings.read_timeout_seconds)

    def _fresh(entry: Any) -> bool:
        """A `creating` row of a live run: its process is alive (this host) and it is younger than any
        create call can last."""
        if owner_alive(entry.owner) is False:
            return False  # its run was killed: the create is lost, not in progress
        age = (datetime.now(UTC) - entry.updated_at.replace(tzinfo=UTC)).total_seconds()
        return age < create_window

    async def _follow(item: WorkItem, attempt: int, dest: Path, trace: dict[str, str]) -> ItemResult:
        """Another run holds this picture's create: wait for its task id and poll that task."""
        deadline = time.monotonic() + create_window  # a create lasts no longer than its timeouts
        while time.monotonic() < deadline:
            other = ledger.latest(item.key)
            if other and other.task_id:
                return await _finish(item, other.attempt, other.task_id, dest, trace, attempts=0,
                                     first_delay=0.0)
            if other is None or other.status not in ("creating",) or other.attempt != attempt:
                break
            await asyncio.sleep(0.2)
        return ItemResult(status="pending_reconcile", stage="create", error_code="claimed_elsewhere",
                          message="another run is creating this picture and has no task id yet")

    async def _source(item: WorkItem) -> tuple[str | None, str | None]:
        p = item.prepared
        use_url = p.note is None and (
            (input_mode == "url" and item.source.startswith(("http://", "https://")))
            or (input_mode == "auto" and batch.is_public_url(item.source))
        )
        if use_url:
            return None, item.source
        file_id = await upload_input(p.sha256, p.path, p.content_type, feature_slug, env,
                                     settings.upload_route)
        return file_id, None

    async def _finish(item: WorkItem, attempt: int, task_id: str, dest: Path, trace: dict[str, str],
                      *, attempts: int, first_delay: float | None = None) -> ItemResult:
        trace["stage"] = "poll"
        try:
            polled = await wait_for_result(task_id, feature_slug, run_id, first_delay)
        except (PollDeadlineExceeded, InvalidTaskId) as exc:
            ledger.mark(item.key, attempt, status="pending_reconcile", error_code=exc.report_code)
            return ItemResult(status="pending_reconcile", stage="poll", error_code=exc.report_code,
                              message=str(exc), task_id=task_id, attempts=attempts)
        st = polled.status
        if st.status == "error":
            err = EngineError(st.error_message or "the engine reported an error", task_id=task_id,
                              error_code=st.error or "unknown_engine_error", request_id=st.request_id)
            ledger.mark(item.key, attempt, status="failed", error_code=err.report_code,
                        error_message=err.message[:500])
            res = _failure(err, stage="task")
            res.task_id, res.polls, res.attempts = task_id, polled.polls, attempts
            return res
        # The vendor charged at success, whatever follows; exactly one run's report carries the charge.
        charged_here = ledger.record_charge(item.key, attempt, settings.units_per_task, run_id)
        units = settings.units_per_task if charged_here else 0
        trace["stage"] = "download"
        try:
            got = await download_result(task_id, st.result_url, str(dest), feature_slug)
        except BackdropError as exc:
            ledger.mark(item.key, attempt, status="pending_reconcile", error_code=exc.report_code)
            res = _failure(exc, stage="download")
            res.status, res.units, res.task_id, res.polls = "pending_reconcile", units, task_id, polled.polls
            return res
        ledger.mark(item.key, attempt, status="succeeded", output_path=str(got.path),
                    output_sha256=got.sha256, width=got.width, height=got.height)
        return ItemResult(status="succeeded", task_id=task_id, request_id=st.request_id,
                          attempts=attempts, polls=polled.polls, units=units,
                          output_path=str(got.path), output_sha256=got.sha256, width=got.width,
                          height=got.height, note=item.prepared.note if charged_here else
                          "paid for by another run of Backdrop (its report counts the units)")

    def _reuse(entry: Any, dest: Path) -> ItemResult | None:
        src = Path(entry.output_path) if entry.output_path else None
        if src is None or not src.is_file() or steps.file_sha256(src) != entry.output_sha256:
            return None
        if src.resolve() != dest.resolve():
            copy_atomic(src, dest)
        duplicate = any(a.error_code == "ambiguous_recreated" for a in ledger.attempts(entry.content_key))
        return ItemResult(status="succeeded", task_id=entry.task_id, units=0, reused=True,
                          possible_duplicate=duplicate,
                          output_path=str(dest), output_sha256=entry.output_sha256,
                          width=entry.width, height=entry.height,
                          note="already done in an earlier run; nothing paid")

    def _unexpected(item: WorkItem, exc: Exception, stage: str) -> ItemResult:
        """An error that is not the API's (e.g. Prefect's own API failed): the ledger decides the status."""
        entry = ledger.latest(item.key)
        in_flight = entry is not None and entry.status in ("creating", "created", "ambiguous")
        return ItemResult(status="pending_reconcile" if in_flight else "failed", stage=stage,
                          error_code="internal_error", message=f"{type(exc).__name__}: {str(exc)[:300]}",
                          task_id=entry.task_id if entry else None)

    def _failure(exc: BackdropError, *, stage: str) -> ItemResult:
        if isinstance(exc, CreditInsufficiency):
            stop.setdefault("CreditInsufficiency", "the account ran out of units")
        elif isinstance(exc, AuthError):
            stop.setdefault("InvalidApiKey", "the API key was refused")
        status = "pending_reconcile" if isinstance(exc, AmbiguousCreate) else "failed"
        return ItemResult(status=status, stage=stage, error_code=exc.report_code,
                          message=exc.message or str(exc), http_status=exc.status,
                          request_id=exc.request_id, attempts=1 if stage != "upload" else 0)

    batch_sem = asyncio.Semaphore(concurrency)

    hooks = WebhookReceiver.from_settings(settings) if not dry_run else None
    if hooks is not None:
        await asyncio.to_thread(hooks.start)
        set_receiver(hooks)
        logger.info("receiving webhooks at %s", hooks.url)
    processing_started = time.monotonic()
    try:
        results = await asyncio.gather(*(_one(i) for i in items))
        processing_seconds = time.monotonic() - processing_started
        traffic = client_stats()
    finally:
        await close_clients()
        planner = forget_planner(run_id)
        if hooks is not None:
            set_receiver(None)
            await asyncio.to_thread(hooks.stop)

    outcomes = _outcomes(rows, rejected, results, names, settings.unit_price)
    df = build_report(outcomes)
    summary = summarize(df, unit_price=settings.unit_price, currency=settings.currency,
                        units_per_task=settings.units_per_task)
    summary.update(csv=csv, out=str(out_dir), feature=feature_slug, dry_run=dry_run, run_id=run_id,
                   unique_pictures=len(items))
    paid = sum(1 for _, r in results if r.status == "succeeded" and not r.reused and r.task_id)
    requests_total = sum(traffic["requests"].values())  # type: ignore[union-attr]
    latencies = df.loc[(df["status"] == "succeeded") & ~df["reused"].astype(bool), "seconds"].dropna()
    summary.update(
        processing_seconds=round(processing_seconds, 3),
        requests_by_route=traffic["requests"], requests_total=requests_total,
        api_requests_per_picture=round(_api_requests(traffic) / paid, 3) if paid else None,
        http_429=traffic["http_429"], retries=traffic["retries"],
        transport_errors=traffic["transport_errors"],
        latency_p50_seconds=round(float(latencies.quantile(0.5)), 3) if len(latencies) else None,
        latency_p95_seconds=round(float(latencies.quantile(0.95)), 3) if len(latencies) else None,
        first_poll_seconds=round(planner.first_delay(), 3) if planner else None,
        done_at_first_poll=(round(planner.done_at_first / planner.first_polls, 3)
                            if planner and planner.first_polls else None),
        webhooks=hooks.counters() if hooks is not None else None,
    )
    if dry_run:
        to_pay = sum(1 for _, r in results if r.error_code == "dry_run")
        summary["estimated_units"] = to_pay * settings.units_per_task
        summary["estimated_cost"] = round(to_pay * settings.units_per_task * settings.unit_price, 4)
    paid_ids = sorted({r.task_id for _, r in results if r.task_id and not r.reused and r.units})
    if settings.reconcile_with_vendor and paid_ids:
        since = min([run_started, *(e.created_at.replace(tzinfo=UTC) for e in ledger.entries(run_id=run_id))])
        vendor = await vendor_units_for(feature_slug, paid_ids, since)
        summary["vendor_units"] = vendor
        summary["units_difference"] = vendor - summary["units_charged"]
        if summary["units_difference"]:
            logger.warning("the vendor charged %s units for this run's tasks, the report says %s",
                           vendor, summary["units_charged"])
    summary["files"] = write_report(df, summary, out_dir)
    gallery = await asyncio.to_thread(write_gallery, df, summary, out_dir)  # Pillow work, off the loop
    summary["files"].update(gallery.as_dict())
    write_summary(summary, out_dir)  # again, now listing the gallery too
    await acreate_markdown_artifact(summary_markdown(summary), key="backdrop-summary",
                                    description="Backdrop batch summary")
    await acreate_link_artifact(gallery.html.resolve().as_uri(), link_text="Open the gallery (before and after)",
                                key="backdrop-gallery", description=f"gallery.html in {out_dir}")
    failed_rows = failures_table(df)
    if failed_rows:
        await acreate_table_artifact(failed_rows, key="backdrop-failures",
                                     description="Rows that did not succeed")
    logger.info("done: %(succeeded)d succeeded, %(failed)d failed, %(skipped)d skipped, "
                "%(pending_reconcile)d pending; %(units_charged)d units", summary)
    bad = summary["failed"] + summary["pending_reconcile"]
    if bad:
        return Completed(name="Completed with failures", data=summary,
                         message=f"{bad} of {summary['rows']} rows did not succeed")
    return summary


def _api_requests(traffic: dict[str, Any]) -> int:
    """API requests spent on pictures: uploads, creates and polls (not the end-of-run credit check)."""
    return sum(int(traffic["requests"].get(r, 0)) for r in ("file", "create", "poll"))


def _outcomes(rows: list[Any], rejected: dict[int, InputRejected], results: list[tuple[WorkItem, ItemResult]],
              names: dict[int, Path], unit_price: float) -> list[RowOutcome]:
    """Exactly one outcome per input row."""
    out: list[RowOutcome] = []
    for row in rows:
        if row.line in rejected:
            exc = rejected[row.line]
            out.append(RowOutcome(line=row.line, row_id=row.row_id, input=row.image_url, prompt=row.prompt,
                                  template_id=row.template_id, status="failed", failed_stage="preflight",
                                  error_code=exc.report_code, error_message=exc.message,
                                  http_status=exc.status, extra=row.extra))
    for item, res in results:
        for i, row in enumerate(item.rows):
            dup = i > 0
            output = res.output_path
            if dup and output and res.status == "succeeded":
                copy_atomic(Path(output), names[row.line])
                output = str(names[row.line])
            units = 0 if dup else res.units
            out.append(RowOutcome(
                line=row.line, row_id=row.row_id, input=row.image_url, prompt=row.prompt,
                template_id=row.template_id, status=res.status, failed_stage=res.stage,
                error_code=res.error_code, error_message=res.message, http_status=res.http_status,
                task_id=res.task_id, request_id=res.request_id, attempts=0 if dup else res.attempts,
                polls=0 if dup else res.polls, started_at=res.started_at, finished_at=res.finished_at,
                seconds=res.seconds, units_charged=units, cost=round(units * unit_price, 4),
                output_path=output, output_sha256=res.output_sha256, width=res.width, height=res.height,
                input_sha256=item.prepared.sha256, reused=res.reused or dup,
                possible_duplicate=res.possible_duplicate and not dup,
                duplicate_of=item.primary.row_id if dup else None, note=res.note, extra=row.extra))
    return out
