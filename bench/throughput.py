"""Throughput at the vendor's limit, measured on the sandbox with the real limits scaled in time.

    .venv/bin/python bench/throughput.py [--rows 1000] [--time-scale 20] [--modes upload,url,...] [--load N]
                                         [--profile-dir DIR]

One key allows 250 requests per rolling 300 s. A picture takes at least 3 requests with an upload (file slot,
create, one poll) and 2 with a public URL, so the limit is 1,000 pictures an hour with uploads and 1,500 with
URLs. The sandbox runs `time_scale` times faster than the vendor (durations, rate-limit windows), and Backdrop's
pacing and polling settings are scaled the same way, so figures are reported in vendor time.

Modes: upload (one file per slot request), batched_upload (slots for up to N pictures per File API call,
`--upload-batch`: the ceiling moves to 250 / 300 s / (2 + 1/N) requests, about 1,430 pictures an hour at N = 10),
url, webhook, batched_webhook (batched slots and webhooks: a poll after each delivery), vendor_sample (fixed 2 s
polls, as the vendor's sample code), two_workers (two processes, one shared
limiter in a database), two_keys_one_host (two batches with two keys and two accounts at once on one host: the
vendor's per-address limit, 250 per 300 s, is shared, through the database limiter); then the peak RSS of a
10,000-row run and a re-run of a finished batch. Every mode reports how long finished tasks waited for the poll
that found them done (p50/p95), and every mode the Prefect server's CPU per row beside the batch's. `--load N`
runs N busy processes beside everything; `--profile-dir` samples each batch with py-spy. A mode whose batch fails
prints its error (the batch's stderr tail) and its partial figures, and the other modes still run. The last line is
always one JSON object with every figure (a failed mode's object carries "error").
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import http.server
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    BatchFailed,
    PrefectServer,
    admin,
    configure,
    draw_pictures,
    finish_batch,
    free_port,
    prefect_server,
    run_batch,
    sandbox,
    scaled_env,
    start_batch,
    start_load,
    stop_load,
    write_csv,
)
from _profile import table

LIMIT_PER_HOUR = {"upload": 1000.0, "url": 1500.0}
PARTIAL = ("succeeded", "failed", "pending_reconcile", "processing_seconds", "requests_by_route", "http_429",
           "cpu_seconds", "peak_rss_mb", "upload_batching", "interrupted")


def batched_limit(n: int) -> float:
    """Pictures an hour at 250 requests per 300 s with a share of a slot call, a create and a poll each."""
    return 3600 * 250 / 300 / (2 + 1 / n)


def _guard(results: dict[str, Any], mode: str, run: Callable[[], None]) -> None:
    """Run one mode; if it fails, say why and what it left, and let the other modes run."""
    try:
        run()
    except BatchFailed as exc:
        partial = {k: exc.partial[k] for k in PARTIAL if k in exc.partial}
        results[mode] = {**results.get(mode, {}), "error": f"{exc}: {exc.stderr_tail[-500:]}", "partial": partial}
        print(f"{mode}: FAILED, {exc}; the batch's stderr ends:\n{exc.stderr_tail}\n{mode}: partial figures "
              f"{json.dumps(partial)}", flush=True)
    except Exception as exc:  # noqa: BLE001 - the bench reports every mode it can, whatever broke one
        results[mode] = {**results.get(mode, {}), "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        print(f"{mode}: FAILED, {type(exc).__name__}: {exc}", flush=True)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


def _figures(mode: str, res: dict[str, Any], time_scale: float, rows: int, limit: float) -> dict[str, Any]:
    done = res["succeeded"]
    vendor_seconds = res["processing_seconds"] * time_scale
    per_hour = done / vendor_seconds * 3600 if vendor_seconds else 0.0
    by_route = {k: round(v / done, 3) for k, v in res["requests_by_route"].items() if v and done}
    fig = {
        "rows": rows, "succeeded": done, "pictures_per_hour": round(per_hour, 1),
        "ratio_to_limit": round(per_hour / limit, 3), "requests_per_picture": res["api_requests_per_picture"],
        "requests_per_picture_by_route": by_route, "http_429": res["http_429"],
        "p50_seconds": round((res["latency_p50_seconds"] or 0) * time_scale, 2),
        "p95_seconds": round((res["latency_p95_seconds"] or 0) * time_scale, 2),
        "cpu_ms_per_row": round(1000 * res["cpu_seconds"] / rows, 2), "peak_rss_mb": round(res["peak_rss_mb"], 1),
        "first_poll_vendor_seconds": round((res.get("first_poll_seconds") or 0) * time_scale, 2),
        "done_at_first_poll": res.get("done_at_first_poll"), "upload_batching": res.get("upload_batching"),
    }
    if res.get("failures_by_code") or res.get("skipped") or done < rows:
        print(f"{mode}: failures {res.get('failures_by_code')}, skipped {res.get('skipped')}, pending "
              f"{res.get('pending_reconcile')}, not attempted {res.get('not_attempted')} {res.get('interrupted')}",
              flush=True)
    print(f"{mode:14s} {fig['pictures_per_hour']:7.1f} pictures/h = {fig['ratio_to_limit']:.2f} of the limit; "
          f"{fig['requests_per_picture']} requests/picture {by_route}; 429s {fig['http_429']}; "
          f"p50/p95 {fig['p50_seconds']}/{fig['p95_seconds']} s; {fig['cpu_ms_per_row']} CPU ms/row; "
          f"peak RSS {fig['peak_rss_mb']} MB; first poll at {fig['first_poll_vendor_seconds']} s "
          f"({fig['done_at_first_poll']} done by then)", flush=True)
    return fig


def _poll_waits(base: str, key: str, time_scale: float) -> tuple[list[float], list[float]]:
    """From the sandbox, in vendor seconds: how long finished tasks waited for the poll that found them done; and
    each task's longest silence while it ran (from its create, or a poll, to the next poll, up to the poll that
    found it done), which the vendor's unpublished polling window bounds (Backdrop's own bound: 20 s)."""
    tasks = [t for t in admin(base, key, "tasks") if t["status"] == "success" and t["finished"]]
    polls: dict[str, list[float]] = {}
    for entry in admin(base, key, "journal"):
        if entry["method"] == "GET" and entry.get("route") == "poll" and entry["status"] == 200:
            polls.setdefault(entry["path"].rsplit("/", 1)[-1], []).append(float(entry["time"]))
    waits, silences = [], []
    for task in tasks:
        times = sorted(polls.get(task["task_id"], []))
        found = next((t for t in times if t >= task["finished"]), None)
        if found is None:
            continue
        waits.append((found - task["finished"]) * time_scale)
        marks = [float(task["created"]), *(t for t in times if t <= found)]
        silences.append(max(b - a for a, b in zip(marks, marks[1:], strict=False)) * time_scale)
    return waits, silences


def _poll_wait(base: str, key: str, time_scale: float, *more_keys: str) -> dict[str, float | None]:
    """p50 and p95 of `_poll_waits` over these keys' tasks, and the longest silences (p99, max)."""
    both = [_poll_waits(base, k, time_scale) for k in (key, *more_keys)]
    waits = sorted(w for got in both for w in got[0])
    silences = sorted(w for got in both for w in got[1])
    if not waits:
        return {"poll_wait_p50_seconds": None, "poll_wait_p95_seconds": None, "silence_p99_seconds": None,
                "silence_max_seconds": None}
    return {"poll_wait_p50_seconds": round(waits[len(waits) // 2], 2),
            "poll_wait_p95_seconds": round(waits[int(0.95 * (len(waits) - 1))], 2),
            "silence_p99_seconds": round(silences[int(0.99 * (len(silences) - 1))], 2),
            "silence_max_seconds": round(silences[-1], 2)}


def _refusals(base: str, key: str, time_scale: float, *more_keys: str) -> dict[str, int]:
    """The sandbox's 429s by the window that refused them, from its journal (when each request was counted):
    `window` (250 per 300 s was full), `per_second` (5 per second was full); `after_first_minute` counts
    those more than 60 vendor seconds after the first request (the steady state)."""
    api = [e for k in (key, *more_keys) for e in admin(base, k, "journal")
           if e.get("route") not in ("storage_upload", "storage_result")]
    if not api:
        return {"window": 0, "per_second": 0, "after_first_minute": 0}
    start = min(e["received"] for e in api)
    accepted = sorted(e["received"] for e in api if e["status"] != 429)
    long_s = 300 / time_scale
    out = {"window": 0, "per_second": 0, "after_first_minute": 0}
    for e in (e for e in api if e["status"] == 429 and e.get("fault") == "rate_limit"):
        t = e["received"]
        in_window = bisect.bisect_right(accepted, t) - bisect.bisect_right(accepted, t - long_s)
        out["window" if in_window >= 250 else "per_second"] += 1
        out["after_first_minute"] += (t - start) * time_scale > 60
    return out


def _window_use(base: str, key: str, time_scale: float) -> dict[str, Any]:
    """Where the key's budget went, from the sandbox's journal (vendor time): the API requests it counted in each
    300 s from the first (at most 250 each), the span from the first to the last, and the share of the budget that
    span allowed that was used (`(requests - 250) / (250 x (span - 300) / 300)`, the first window's 250 at once)."""
    got = sorted(e["received"] for e in admin(base, key, "journal")
                 if e.get("route") not in ("storage_upload", "storage_result") and e["status"] != 429)
    if len(got) < 2:
        return {"requests_by_window": [], "span_seconds": 0.0, "budget_used": None}
    start, span = got[0], (got[-1] - got[0]) * time_scale
    counts = [0] * (int(span // 300) + 1)
    for t in got:
        counts[int((t - start) * time_scale // 300)] += 1
    used = (len(got) - 250) / (250 * (span - 300) / 300) if span > 300 else None
    return {"requests_by_window": counts, "span_seconds": round(span, 1),
            "budget_used": None if used is None else round(used, 3)}


def _static_server(folder: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(folder), **kw)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_port


def _api_span(base: str, keys: list[str]) -> float:
    """Real seconds from the first to the last API request the sandbox counted for these keys."""
    got = [e["received"] for k in keys for e in admin(base, k, "journal")
           if e.get("route") not in ("storage_upload", "storage_result")]
    return max(got) - min(got) if got else 0.0


def _merge(parts: list[dict[str, Any]], span: float = 0.0) -> dict[str, Any]:
    """The summaries of batches run at once, as one batch (the worst latencies; the time: the longest batch's, or
    `span`, the API requests' span over both, if longer: two batches that start apart are not one shorter batch)."""
    merged = {
        "succeeded": sum(p["succeeded"] for p in parts),
        "processing_seconds": max(span, *(p["processing_seconds"] for p in parts)),
        "requests_by_route": {r: sum(p["requests_by_route"].get(r, 0) for p in parts)
                              for r in parts[0]["requests_by_route"]},
        "http_429": sum(p["http_429"] for p in parts),
        "latency_p50_seconds": max(p["latency_p50_seconds"] or 0 for p in parts),
        "latency_p95_seconds": max(p["latency_p95_seconds"] or 0 for p in parts),
        "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
    }
    pictures = sum(p["requests_by_route"].get(r, 0) for p in parts for r in ("file", "create", "poll"))
    merged["api_requests_per_picture"] = round(pictures / max(1, merged["succeeded"]), 3)
    return merged


def _report_refusals(results: dict[str, Any], mode: str, base: str, key: str, time_scale: float,
                     *more_keys: str) -> None:
    refused = _refusals(base, key, time_scale, *more_keys)
    results[mode]["http_429_by_window"] = refused
    print(f"{mode}: the sandbox refused {refused['window']} for the 300 s window and {refused['per_second']} "
          f"for the 1 s window; {refused['after_first_minute']} after the first minute", flush=True)


@contextlib.contextmanager
def _server_cpu(server: PrefectServer, results: dict[str, Any], mode: str, rows: int) -> Iterator[None]:
    """The Prefect server's CPU ms per row over the block (its subprocesses included), into `results[mode]`, even
    when the batch fails."""
    before = server.cpu_seconds()
    try:
        yield
    finally:
        after = server.cpu_seconds()
        if before is not None and after is not None:
            ms = round(1000 * (after - before) / rows, 2)
            results.setdefault(mode, {})["prefect_server_cpu_ms_per_row"] = ms
            print(f"{mode}: the Prefect server used {ms} CPU ms/row (load average "
                  f"{os.getloadavg()[0]:.1f})", flush=True)


def _print_profile(path: Path, rows: int, cpu_seconds: float) -> None:
    """Where the batch's CPU went, by owner (bench/_profile.py), once py-spy has written its file."""
    deadline, size = time.monotonic() + 60, -1
    while time.monotonic() < deadline:  # py-spy writes once the batch has exited: wait until the file stops growing
        now = path.stat().st_size if path.is_file() else 0
        if now and now == size:
            break
        size = now
        time.sleep(1.0)
    if not path.is_file():
        print(f"no profile at {path}", flush=True)
        return
    print(f"where the batch's CPU went ({path}):", flush=True)
    for group, share, ms in table(path, rows, cpu_seconds):
        print(f"  {group:58s} {100 * share:5.1f}% {ms:7.1f} ms/row", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--vendor-rows", type=int, default=300, help="rows for the slow vendor_sample mode")
    ap.add_argument("--rss-rows", type=int, default=10000)
    ap.add_argument("--time-scale", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--modes",
                    default="upload,batched_upload,url,webhook,batched_webhook,vendor_sample,two_workers,"
                            "two_keys_one_host,rss,rerun")
    ap.add_argument("--upload-batch", type=int, default=10, help="N of the batched_upload mode")
    ap.add_argument("--upload-linger", type=float, default=0.3,
                    help="BACKDROP_UPLOAD_BATCH_LINGER_SECONDS of the batched_upload mode, in vendor seconds")
    ap.add_argument("--rate-limit-burst", type=int, default=None,
                    help="BACKDROP_RATE_LIMIT_BURST for every batch (default: unset, the whole window at once)")
    ap.add_argument("--load", type=int, default=0,
                    help="busy processes (`python -c 'while 1: pass'`) beside the batches for the whole bench")
    ap.add_argument("--profile-dir", type=Path, default=None,
                    help="sample each mode's batch with py-spy (if installed) into DIR/<mode>.txt and print where "
                         "its CPU went (bench/_profile.py)")
    args = ap.parse_args()
    modes = args.modes.split(",")
    results: dict[str, Any] = {"load": args.load}
    load = start_load(args.load)
    try:
        _run(args, modes, results)
    except BaseException as exc:  # the sandbox or Prefect server did not start, Ctrl-C, ...: still report
        results["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        raise
    finally:
        stop_load(load)
        results["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(results), flush=True)


def _run(args: argparse.Namespace, modes: list[str], results: dict[str, Any]) -> None:
    s = args.time_scale
    with tempfile.TemporaryDirectory(prefix="backdrop-bench-") as tmp_name:
        tmp = Path(tmp_name)
        pics = tmp / "pictures"
        n = max(args.rows, args.rss_rows if "rss" in modes else 0)
        t0 = time.monotonic()
        names = draw_pictures(pics, n)
        print(f"drew {n} pictures in {time.monotonic() - t0:.0f} s", flush=True)
        static, port = _static_server(pics)
        with prefect_server(tmp / "prefect") as server, sandbox(s, webhook_secret=WEBHOOK_SECRET) as base:
            common = {"PREFECT_API_URL": server.url, "PREFECT_HOME": str(tmp / "prefect-client")}

            burst = {"BACKDROP_RATE_LIMIT_BURST": str(args.rate_limit_burst)} if args.rate_limit_burst else {}

            def env_for(key: str, home: str, **extra: str) -> dict[str, str]:
                return scaled_env(base, key, s, BACKDROP_HOME=str(tmp / home), **common, **burst, **extra)

            def batch(mode: str, rows: int, csv_rows: list[str], *flags: str, **extra: str) -> dict[str, Any]:
                key = f"sandbox-bench-{mode}"
                configure(base, key, duration_mode="lognormal", **extra.pop("_sandbox", {}))  # type: ignore[arg-type]
                csv = write_csv(pics / f"{mode}.csv", csv_rows[:rows])  # paths are relative to the CSV
                profile = args.profile_dir / f"{mode}.txt" if args.profile_dir else None
                res = run_batch(csv, tmp / f"out-{mode}", env_for(key, f"home-{mode}", **extra),
                                "--concurrency", str(args.concurrency), *flags, profile=profile)
                if profile is not None:
                    _print_profile(profile, rows, res["cpu_seconds"])
                return res

            def single(mode: str, rows: int, csv_rows: list[str], limit: float, *flags: str, **extra: Any) -> None:
                key = f"sandbox-bench-{mode}"
                with _server_cpu(server, results, mode, rows):
                    res = batch(mode, rows, csv_rows, *flags, **extra)
                results[mode] = {**_figures(mode, res, s, rows, limit), **results.get(mode, {})}
                _report_refusals(results, mode, base, key, s)
                results[mode].update(_poll_wait(base, key, s))
                results[mode].update(_window_use(base, key, s))
                print(f"{mode}: API requests in each 300 s {results[mode]['requests_by_window']}; "
                      f"{results[mode]['budget_used']} of the budget after the first window", flush=True)
                print(f"{mode}: finished tasks waited for their poll p50 {results[mode]['poll_wait_p50_seconds']} "
                      f"s, p95 {results[mode]['poll_wait_p95_seconds']} s; longest silence of a running task p99 "
                      f"{results[mode]['silence_p99_seconds']} s, max {results[mode]['silence_max_seconds']} s "
                      "(vendor time)", flush=True)

            unbatched = {"BACKDROP_UPLOAD_BATCH": "1"}  # the earlier modes: one file per slot request
            n = args.upload_batch
            urls = [f"http://127.0.0.1:{port}/{name}" for name in names]
            hook_port = free_port()
            runs: dict[str, Callable[[], None]] = {
                "upload": lambda: single("upload", args.rows, names, LIMIT_PER_HOUR["upload"],
                                         "--input-mode", "upload", **unbatched),
                "batched_upload": lambda: single(
                    "batched_upload", args.rows, names, batched_limit(n), "--input-mode", "upload",
                    BACKDROP_UPLOAD_BATCH=str(n), BACKDROP_UPLOAD_BATCH_LINGER_SECONDS=str(args.upload_linger / s)),
                "url": lambda: single("url", args.rows, urls, LIMIT_PER_HOUR["url"], "--input-mode", "url",
                                      BACKDROP_FETCH_ALLOW_NETWORKS="127.0.0.1/32"),  # preflight fetches loopback
                "vendor_sample": lambda: single("vendor_sample", args.vendor_rows, names, LIMIT_PER_HOUR["upload"],
                                                "--input-mode", "upload", BACKDROP_POLL_STRATEGY="fixed",
                                                **unbatched),
                "webhook": lambda: single(
                    "webhook", args.rows, names, LIMIT_PER_HOUR["upload"], "--input-mode", "upload",
                    _sandbox={"webhook_urls": [f"http://127.0.0.1:{hook_port}/webhooks/perfectcorp"]},
                    BACKDROP_WEBHOOK_LISTEN=f"127.0.0.1:{hook_port}", BACKDROP_WEBHOOK_SECRET=WEBHOOK_SECRET,
                    **unbatched),
                "batched_webhook": lambda: single(  # one poll a task: under 2.2 requests a picture
                    "batched_webhook", args.rows, names, batched_limit(n), "--input-mode", "upload",
                    _sandbox={"webhook_urls": [f"http://127.0.0.1:{hook_port}/webhooks/perfectcorp"]},
                    BACKDROP_WEBHOOK_LISTEN=f"127.0.0.1:{hook_port}", BACKDROP_WEBHOOK_SECRET=WEBHOOK_SECRET,
                    BACKDROP_UPLOAD_BATCH=str(n), BACKDROP_UPLOAD_BATCH_LINGER_SECONDS=str(args.upload_linger / s)),
            }
            for mode in (m for m in modes if m in runs):  # in the order asked for
                _guard(results, mode, runs[mode])

            def two_workers() -> None:
                key = "sandbox-bench-two"
                configure(base, key, duration_mode="lognormal")
                half = args.rows // 2
                env = env_for(key, "home-two", BACKDROP_LIMITER_URL=f"sqlite:///{tmp / 'limiter.db'}", **unbatched)
                outs = [tmp / f"out-two{i}" for i in range(2)]
                procs = [start_batch(write_csv(pics / f"two{i}.csv", part), outs[i], env,
                                     "--concurrency", str(args.concurrency))
                         for i, part in enumerate((names[:half], names[half:args.rows]))]
                with _server_cpu(server, results, "two_workers", args.rows):
                    parts = [finish_batch(p, out) for p, out in zip(procs, outs, strict=True)]
                merged = _merge(parts, _api_span(base, [key]))
                results["two_workers"] = {**_figures("two_workers", merged, s, args.rows, LIMIT_PER_HOUR["upload"]),
                                          **results.get("two_workers", {})}
                _report_refusals(results, "two_workers", base, key, s)
                results["two_workers"].update(_poll_wait(base, key, s))

            def two_keys_one_host() -> None:
                # two clients of an agency: their own key, account and home; one host, one address budget
                keys = ["sandbox-bench-client-a", "sandbox-bench-client-b"]
                half = args.rows // 2
                procs, outs = [], []
                for i, (key, part) in enumerate(zip(keys, (names[:half], names[half:args.rows]), strict=True)):
                    configure(base, key, duration_mode="lognormal")
                    env = env_for(key, f"home-client{i}", BACKDROP_ACCOUNT=key, **unbatched,
                                  BACKDROP_LIMITER_URL=f"sqlite:///{tmp / 'host-limiter.db'}")
                    outs.append(tmp / f"out-client{i}")
                    procs.append(start_batch(write_csv(pics / f"client{i}.csv", part), outs[i], env,
                                             "--concurrency", str(args.concurrency)))
                with _server_cpu(server, results, "two_keys_one_host", args.rows):
                    parts = [finish_batch(p, out) for p, out in zip(procs, outs, strict=True)]
                fig = {**_figures("two_keys_one_host", _merge(parts, _api_span(base, keys)), s, args.rows,
                                    LIMIT_PER_HOUR["upload"]),
                       **results.get("two_keys_one_host", {})}
                refused = sum(1 for k in keys for e in admin(base, k, "journal") if e["status"] == 429)
                fig.update(mode="two_keys_one_host", sandbox_429=refused,
                           complete=all(p["exit_code"] == 0 for p in parts) and fig["succeeded"] == args.rows,
                           **_poll_wait(base, keys[0], s, keys[1]))
                results["two_keys_one_host"] = fig
                _report_refusals(results, "two_keys_one_host", base, keys[0], s, keys[1])
                print(f"two_keys_one_host: {refused} 429s at the sandbox, complete {fig['complete']}, poll wait "
                      f"p50/p95 {fig['poll_wait_p50_seconds']}/{fig['poll_wait_p95_seconds']} s", flush=True)

            def rerun() -> None:
                t0 = time.monotonic()
                res = run_batch(pics / "upload.csv", tmp / "out-upload-again",
                                env_for("sandbox-bench-upload", "home-upload"), "--concurrency",
                                str(args.concurrency))
                results["rerun_seconds"] = round(time.monotonic() - t0, 1)
                results["rerun_creates"] = res["requests_by_route"].get("create", 0)
                print(f"re-run of the finished {args.rows}-row batch: {results['rerun_seconds']} s wall, "
                      f"{results['rerun_creates']} creates, {res['reused']} rows reused", flush=True)

            def rss() -> None:
                key = "sandbox-bench-rss"
                configure(base, key, duration_mode="immediate", rate_limit_enabled=False,
                          starting_balance=4 * args.rss_rows + 1000)  # 10,000 units would stop it at 2,500
                csv = write_csv(pics / "rss.csv", names[: args.rss_rows])
                env = env_for(key, "home-rss", BACKDROP_RATE_LIMIT_REQUESTS="1000000",
                              BACKDROP_RATE_LIMIT_PER_SECOND="100000")
                t0 = time.monotonic()
                res = run_batch(csv, tmp / "out-rss", env, "--concurrency", str(args.concurrency))
                results["rss_mb_10k"] = round(res["peak_rss_mb"], 1)
                print(f"{args.rss_rows} rows without rate limits: peak RSS {results['rss_mb_10k']} MB, "
                      f"{res['succeeded']} succeeded in {time.monotonic() - t0:.0f} s wall, "
                      f"{1000 * res['cpu_seconds'] / args.rss_rows:.1f} CPU ms/row", flush=True)

            if "two_workers" in modes:
                _guard(results, "two_workers", two_workers)
            if "two_keys_one_host" in modes:
                _guard(results, "two_keys_one_host", two_keys_one_host)
            if "rerun" in modes and "upload" in modes and "error" not in results.get("upload", {}):
                _guard(results, "rerun", rerun)
            if "rss" in modes:
                _guard(results, "rss", rss)
        static.shutdown()


if __name__ == "__main__":
    main()
