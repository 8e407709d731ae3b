"""Chaos bench: a batch against a faulty sandbox, killed with SIGKILL half-way, then resumed.

    python bench/chaos.py [--rows 500] [--seed 7] [--time-scale 50] [--concurrency 16]
                          [--profile NAME|all] [--load N] [--keep]

Draws distinct product pictures (plus a few duplicate rows) and a CSV, starts `--load` busy
processes (a laptop doing something else) and one Prefect server, then for each vendor-variant
profile (`backdrop/sandbox/profiles.py`) a sandbox with a seeded fault mix under that profile:
runs `backdrop run` as a subprocess, kills it with SIGKILL once about half the pictures are
`succeeded` in Backdrop's ledger, runs it again (a third time if rows are still pending), keeps
every run's report, then audits them against the sandbox's ledger, tasks and journal and
Backdrop's ledger. Every picture has its own prompt, so a vendor task maps back to its picture by
prompt. The last line is one JSON list, one object per profile (with "error" if its batch failed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _harness import start_load, stop_load  # noqa: E402 - the busy processes, shared with throughput.py

from backdrop.sandbox import SandboxServer, SandboxSettings  # noqa: E402
from backdrop.sandbox.profiles import PROFILES, profile_values  # noqa: E402
from backdrop.settings import BackdropSettings  # noqa: E402

BIN = Path(sys.executable).parent
KEY = "sandbox-chaos"
BACKDROPS = ["white marble", "warm wood", "sunny beach", "grey concrete", "blue studio",
             "pink pastel", "green garden", "black marble", "sunset beach", "beige linen"]
FAULTS = dict(fault_5xx_rate=0.10, fault_drop_rate=0.05, fault_429_burst_rate=0.02,
              fault_engine_error_rate=0.05, fault_lost_create_rate=0.02, fault_slow_rate=0.03,
              fault_slow_s=5.0)
#: the sandbox's task durations, vendor seconds: lognormal, median 10, sigma 0.4
TASK_MEDIAN_S, TASK_SIGMA = 10.0, 0.4
#: the longest task the bench can meet, vendor seconds: the durations' 1-in-3-million quantile
#: (z = 4.5, 60 s) plus the slow fault's delay before a create is handled
LONGEST_TASK_S = TASK_MEDIAN_S * math.exp(4.5 * TASK_SIGMA) + float(FAULTS["fault_slow_s"])
#: real seconds a busy machine may add before the sandbox's engine finishes (and charges) a due task
BUSY_SLACK_S = 10.0
#: real seconds from the SIGKILL until the next run polls the killed run's tasks again (a Prefect
#: flow start-up on a busy machine); a task nobody polls for longer than the polling window expires
RESUME_GAP_S = 60.0
#: real seconds a task stays pollable when the profile does not say: a lost create's task is never
#: polled, and its result is judged only when it is settled, up to a killed run's length plus the
#: restart plus the settle wait after its create, all in real (unscaled) seconds
POLLING_WINDOW_REAL_S = 1200.0


@dataclass
class Run:
    name: str
    code: int | None = None
    seconds: float = 0.0
    killed: bool = False
    timed_out: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None  # this run's report.csv, copied before the next run overwrites it


def draw_batch(folder: Path, rows: int, seed: int) -> tuple[Path, pd.DataFrame]:
    """`rows` CSV rows: distinct pictures (256-384 px, one prompt each) and ~6% duplicate rows."""
    rng = random.Random(seed)
    (folder / "pics").mkdir(parents=True)
    n_dup = rows // 16 if rows > 4 else 0
    records: list[dict[str, str]] = []
    seen: set[str] = set()
    for i in range(rows - n_dup):
        w, h = rng.randint(256, 384), rng.randint(256, 384)
        img = Image.new("RGB", (w, h), tuple(rng.randint(225, 250) for _ in range(3)))
        box = (rng.randint(20, w // 3), rng.randint(20, h // 3),
               rng.randint(2 * w // 3, w - 20), rng.randint(2 * h // 3, h - 20))
        draw = ImageDraw.Draw(img)
        (draw.ellipse if i % 3 else draw.rounded_rectangle)(
            box, fill=tuple(rng.randint(10, 200) for _ in range(3)))
        draw.text((box[0] + 8, box[1] + 8), f"{i:04d}", fill=(255, 255, 255))
        url = f"pics/p{i:04d}.jpg"
        img.save(folder / url, "JPEG", quality=85)
        digest = hashlib.sha256((folder / url).read_bytes()).hexdigest()
        assert digest not in seen, "two drawn pictures are identical"
        seen.add(digest)
        prompt = f"{rng.choice(BACKDROPS)}, soft light, item {i:04d}"
        records.append({"id": f"sku-{i:04d}", "image_url": url, "prompt": prompt,
                        "sku": f"S{i:04d}"})
    for k in range(n_dup):  # the same content again: by the same path, or by a copy of the bytes
        src = records[rng.randrange(len(records))]
        url = src["image_url"]
        if k % 2:
            url = f"pics/copy-{k}.jpg"
            shutil.copyfile(folder / src["image_url"], folder / url)
        records.append({**src, "id": f"dup-{k}", "image_url": url})
    rng.shuffle(records)
    df = pd.DataFrame(records)
    df.to_csv(folder / "batch.csv", index=False)
    return folder / "batch.csv", df


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_prefect(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """One Prefect server for every run (the CLI would otherwise start one per run)."""
    port, log_path = free_port(), home.parent / "prefect-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "BACKDROP_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port), "--no-services", "--no-ui"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"the Prefect server did not start: see {log_path}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class JournalTap:
    """Copies the sandbox's journal (a bounded deque) every second, deduplicated by request id."""

    def __init__(self, admin: httpx.Client) -> None:
        self.admin = admin
        self.entries: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self._collect()

    def _collect(self) -> None:
        for entry in self.admin.get("/_sandbox/journal").json():
            self.entries[entry["request_id"]] = entry

    def stop(self) -> dict[str, dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        self._collect()
        return self.entries


def succeeded_pictures(db: Path) -> int:
    sql = "SELECT COUNT(DISTINCT content_key) FROM backdrop_work WHERE status = 'succeeded'"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet, or busy


def run_cli(run: Run, cmd: list[str], env: dict[str, str], logs: Path, out: Path, *,
            kill_at: tuple[Path, int] | None = None, timeout: float = 1200.0) -> Run:
    """Run the CLI; with `kill_at=(ledger, n)`, SIGKILL it once n pictures succeeded there.

    The report the run wrote (if any) is copied to `logs/<name>-report.csv`: every run writes its
    report into the same folder, and the audit sums the units of every run's report."""
    t0, wall0 = time.monotonic(), time.time()
    with open(logs / f"{run.name}.out", "wb") as stdout, open(logs / f"{run.name}.err", "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=err)
        try:
            while proc.poll() is None and time.monotonic() - t0 < timeout:
                if kill_at and succeeded_pictures(kill_at[0]) >= kill_at[1]:
                    proc.send_signal(signal.SIGKILL)
                    run.killed = True
                    break
                time.sleep(0.1)
            if proc.poll() is None and not run.killed:
                proc.kill()
                run.timed_out = True
        finally:  # the bench itself stopped (SIGTERM, Ctrl-C): the run goes with it
            if proc.poll() is None and not run.killed and not run.timed_out:
                proc.kill()
            run.code = proc.wait(30)
    run.seconds = time.monotonic() - t0
    lines = (logs / f"{run.name}.out").read_text().strip().splitlines()
    if lines and lines[-1].startswith("{"):
        run.summary = json.loads(lines[-1])
    report = out / "report.csv"
    if report.is_file() and report.stat().st_mtime >= wall0:
        run.report = logs / f"{run.name}-report.csv"
        shutil.copyfile(report, run.report)
    return run


def timing(ts: float) -> dict[str, float]:
    """The lost-create settings of the resumed runs, in real seconds, at time scale `ts`.

    `reconcile_after`: how long after a create's send its task can still be charged. It covers the
    longest task (LONGEST_TASK_S vendor s) twice over, plus BUSY_SLACK_S for a loaded machine (the
    sandbox stamps a charge when its engine gets to the task, not at the task's due time).
    `settle_wait`: how long a run that lost creates waits to settle them. A create the killed run
    left `creating` is judged only `reconcile_after` plus the client's create window (twice the
    connect and read timeouts, not scaled: they are real network timeouts) after its last touch,
    so the wait covers both, plus a minute for the resumed run's own start.
    """
    d = BackdropSettings.model_fields
    create_window = 2 * (float(d["connect_timeout_seconds"].default) + float(d["read_timeout_seconds"].default))
    after = round(2 * LONGEST_TASK_S / ts + BUSY_SLACK_S, 1)
    return {"reconcile_after": after, "settle_wait": round(after + create_window + 60.0, 1),
            "create_window": create_window}


def cli_env(sandbox_url: str, prefect_url: str, tmp: Path, ts: float, rate: int) -> dict[str, str]:
    """The CLI's environment: vendor-time settings divided by the time scale, like the sandbox's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKDROP_", "PREFECT_"))}
    vendor_seconds = dict(POLL_FIRST_SECONDS=8, POLL_INTERVAL_SECONDS=2,
                          POLL_MAX_INTERVAL_SECONDS=30, POLL_DEADLINE_SECONDS=900,
                          BACKOFF_BASE_SECONDS=1, BACKOFF_MAX_SECONDS=30,
                          RATE_LIMIT_WINDOW_SECONDS=300)
    env.update({f"BACKDROP_{k}": str(v / ts) for k, v in vendor_seconds.items()})
    t = timing(ts)
    env.update(BACKDROP_API_URL=sandbox_url, BACKDROP_API_KEY=KEY, BACKDROP_HOME=str(tmp / "home"),
               BACKDROP_RATE_LIMIT_REQUESTS=str(rate), BACKDROP_RATE_LIMIT_PER_SECOND=str(rate / 2),
               BACKDROP_RECONCILE_AFTER_SECONDS=str(t["reconcile_after"]),
               BACKDROP_SETTLE_WAIT_SECONDS=str(t["settle_wait"]),
               BACKDROP_INPUT_ROOTS=str(tmp), BACKDROP_OUTPUT_ROOTS=str(tmp),
               PREFECT_HOME=str(tmp / "prefect"), PREFECT_API_URL=prefect_url,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_CLIENT_RETRY_EXTRA_CODES="500")
    return env


def decodes(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any failure to decode is what is counted
        return False


def read_report(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""],
                       dtype={"row_id": str, "task_id": str, "prompt": str, "note": str})


def _candidates(note: object) -> list[str]:
    """The candidate charges a pending row's note lists (`candidate charges: id id ...`)."""
    text = note if isinstance(note, str) else ""
    if "candidate charges:" not in text:
        return []
    return text.split("candidate charges:", 1)[1].split(";")[0].split()


def audit(tmp: Path, df_in: pd.DataFrame, admin: httpx.Client, journal: dict[str, Any],
          reports: list[pd.DataFrame], profile: str) -> dict[str, Any]:
    """Every run's report and Backdrop's ledger against the sandbox's ledger and tasks.

    Backdrop's ledger is this bench's own (a fresh BACKDROP_HOME): every row is this environment's.
    `reports` are the runs' reports in order; the last is the final one.
    """
    from backdrop.store.ledger import Ledger

    out, final = tmp / "out", reports[-1]
    charges = admin.get("/_sandbox/ledger").json()["charges"]
    tasks = admin.get("/_sandbox/tasks").json()
    entries = Ledger(f"sqlite:///{tmp / 'home' / 'ledger.db'}").entries()
    by_task = {t["task_id"]: t for t in tasks}
    charged = {c["task_id"] for c in charges}
    ledger_ids = {e.task_id for e in entries if e.task_id}
    report_ids = {t for r in reports for t in r["task_id"].dropna()}
    # a pending row's note lists its candidate charges: a charge listed there is not unknown, but
    # no row carries its units, so the units check counts it against Backdrop
    listed = {t for r in reports for n in r.loc[r["status"] == "pending_reconcile", "note"] for t in _candidates(n)}
    unknown = sorted(charged - ledger_ids - report_ids - listed)
    only_candidates = sorted((charged - ledger_ids - report_ids) & listed)
    # each charge in exactly one run's report
    reported_in: Counter[str] = Counter()
    for r in reports:
        reported_in.update(set(r.loc[r["units_charged"] > 0, "task_id"].dropna()))
    # the same picture charged twice (each picture has its own prompt), and whether the report says so
    per_prompt = Counter(by_task[t]["prompt"] for t in charged if t in by_task)
    twice = {p for p, n in per_prompt.items() if n > 1}
    flagged = set(final.loc[final["possible_duplicate"].astype(bool), "prompt"])
    ok = final[final["status"] == "succeeded"].to_dict("records")
    scale = 0.75 if PROFILES[profile].get("result_size") == "scaled" else 1.0
    sizes = {}
    for url in df_in["image_url"].unique():
        with Image.open(tmp / url) as im:
            sizes[url] = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    outputs = {Path(p) for p in final["output_path"].dropna()} | {
        p for p in out.glob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    ordered = final.sort_values("line")
    # rows left pending, and why: the ledger's note, checked against what the sandbox really did
    why: Counter[str] = Counter()
    pending_rows = []
    for r in final[final["status"] == "pending_reconcile"].to_dict("records"):
        cands = _candidates(r.get("note"))
        truth = sorted(t for t in charged - ledger_ids if by_task.get(t, {}).get("prompt") == r["prompt"])
        if isinstance(r.get("task_id"), str):
            reason = f"task known, its end not seen ({r['error_code']})"
        elif truth and set(truth) <= set(cands):
            reason = "lost create, charged: several candidate charges, none provably its"
        elif truth:
            reason = "lost create, charged: its charge NOT among the candidates listed"
        elif cands:
            reason = "lost create, not charged: other creates' charges are candidates"
        else:
            reason = f"lost create, {'charged' if truth else 'not charged'}: no candidates listed"
        why[reason] += 1
        pending_rows.append({"row_id": r["row_id"], "error_code": r["error_code"], "reason": reason,
                             "candidates": len(cands), "vendor_charged": truth})
    return {
        "profile": profile,
        "rows_in": len(df_in), "rows_reported": len(final),
        "reported_once": list(ordered["line"]) == list(range(1, len(df_in) + 1))
        and list(ordered["row_id"]) == list(df_in["id"]),
        "status": dict(Counter(final["status"])),
        "codes": {s: dict(Counter(c.fillna("?"))) for s, c in final.groupby("status")["error_code"]
                  if s != "succeeded"},
        "sandbox_units": sum(c["units"] for c in charges),
        "ledger_units": sum(e.units for e in entries),
        "report_units": int(sum(r["units_charged"].sum() for r in reports)),
        "final_report_units": int(final["units_charged"].sum()),
        "charged_unknown": unknown, "charged_only_as_candidates": only_candidates,
        "charged_in_no_report": sorted(t for t in charged if not reported_in[t]),
        "charged_in_two_reports": sorted(t for t, n in reported_in.items() if n > 1),
        "vendor_tasks": dict(Counter(t["status"] for t in tasks)),
        "twice": len(twice), "twice_unflagged": len(twice - flagged),
        "flagged_rows": int(final["possible_duplicate"].astype(bool).sum()),
        "wrong_task": [r["row_id"] for r in ok if r["task_id"] in by_task
                       and by_task[r["task_id"]]["prompt"] != r["prompt"]],
        "task_not_in_sandbox": [r["row_id"] for r in ok if r["task_id"] not in by_task],
        "wrong_size": [r["row_id"] for r in ok if (r["width"], r["height"]) != sizes[r["input"]]],
        "outputs": len(outputs), "corrupt": sorted(str(p) for p in outputs if not decodes(p)),
        "leftover_tmp": sorted(p.name for p in out.glob(".*") if p.is_file()),
        "pending": len(pending_rows), "pending_why": dict(why), "pending_rows": pending_rows,
        "faults": dict(Counter(e["fault"] for e in journal.values() if e.get("fault"))),
        "requests": len(journal), "ledger_states": dict(Counter(e.status for e in entries)),
        "environments": len({e.environment for e in entries}),
    }


def checks(a: dict[str, Any]) -> dict[str, bool]:
    """The promises the bench holds Backdrop to (issue 11)."""
    return {
        "rows in = rows reported, each once": a["rows_in"] == a["rows_reported"] and a["reported_once"],
        "sandbox units = ledger units = report units":
            a["sandbox_units"] == a["ledger_units"] == a["report_units"],
        "charges unknown to Backdrop = 0": not a["charged_unknown"],
        "created twice without a flag = 0": a["twice_unflagged"] == 0,
        "rows holding another row's picture = 0": not a["wrong_task"],
    }


def print_audit(a: dict[str, Any]) -> None:
    st, ok = a["status"], checks(a)
    mark = {name: "ok  " if passed else "FAIL" for name, passed in ok.items()}
    names = list(ok)
    print(f"[{a['profile']}] checks:")
    print(f"  {mark[names[0]]} rows in {a['rows_in']} = rows reported {a['rows_reported']} "
          f"(each input row exactly once in the final report: {'yes' if a['reported_once'] else 'NO'})")
    print(f"  {mark[names[1]]} units: sandbox {a['sandbox_units']} = Backdrop's ledger "
          f"{a['ledger_units']} = every run's report {a['report_units']} (final report alone "
          f"{a['final_report_units']}; charges in no report {len(a['charged_in_no_report'])}, "
          f"in two {len(a['charged_in_two_reports'])})")
    print(f"  {mark[names[2]]} charges unknown to Backdrop (in no ledger row, no report): "
          f"{len(a['charged_unknown'])} (charges only listed as a pending row's candidate: "
          f"{len(a['charged_only_as_candidates'])})")
    print(f"  {mark[names[3]]} pictures created twice without a possible_duplicate flag: "
          f"{a['twice_unflagged']} (created twice {a['twice']}, flagged rows {a['flagged_rows']})")
    print(f"  {mark[names[4]]} succeeded rows holding another row's picture: {len(a['wrong_task'])}")
    print(f"  rows left pending_reconcile: {a['pending']} {a['pending_why']}")
    for r in a["pending_rows"][:10]:
        print(f"    {r['row_id']}: {r['reason']}; {r['candidates']} candidate(s), the sandbox charged "
              f"{len(r['vendor_charged'])} unknown task(s) for its picture")
    print(f"[{a['profile']}] context: succeeded {st.get('succeeded', 0)}, failed {st.get('failed', 0)} "
          f"{a['codes'].get('failed', {})}, skipped {st.get('skipped', 0)}; vendor tasks "
          f"{a['vendor_tasks']}; outputs {a['outputs']} (failing to decode {len(a['corrupt'])}, of "
          f"an unexpected size {len(a['wrong_size'])}, leftover temporary files "
          f"{len(a['leftover_tmp'])}); faults {a['faults']} in {a['requests']} journaled requests; "
          f"Backdrop's ledger {a['ledger_states']} ({a['environments']} environment)")


def _not_a_client_disconnect(record: logging.LogRecord) -> bool:
    """The killed run leaves requests half-sent, and the sandbox logs each: expected here."""
    exc = record.exc_info[1] if record.exc_info else None
    return type(exc).__name__ != "ClientDisconnect"


def _polling_window(profile: str, ts: float) -> float:
    """The sandbox's polling window under `profile`, vendor seconds: the profile's if it sets one,
    else POLLING_WINDOW_REAL_S real, so that the killed run's tasks outlive the restart and a lost
    create's result can still be fetched when it is settled."""
    return float(PROFILES[profile].get("polling_window_s", max(600.0, POLLING_WINDOW_REAL_S * ts)))  # type: ignore[arg-type]


def fits(profile: str, ts: float) -> str | None:
    """Why `profile` cannot work at time scale `ts` (None: it can).

    A task nobody polls for a polling window expires: polls answer InvalidTaskId, yet it still
    finishes and is charged. The killed run's tasks are polled again only by the next run, after
    its start-up; if that takes longer than the window, those charges can never be seen.
    """
    window = _polling_window(profile, ts) / ts
    if window >= RESUME_GAP_S:
        return None
    return (f"its polling window ({_polling_window(profile, ts):g} vendor s) is {window:.2g} s real at "
            f"time scale {ts:g}, shorter than the {RESUME_GAP_S:g} s a resumed run may take to poll the "
            f"killed run's tasks again (it would need a time scale of at most "
            f"{_polling_window(profile, ts) / RESUME_GAP_S:.2g})")


def _sandbox_settings(args: argparse.Namespace, profile: str) -> SandboxSettings:
    ts = args.time_scale
    return SandboxSettings(
        api_keys=[KEY], seed=args.seed, time_scale=ts, duration_mode="lognormal",
        duration_median_s=TASK_MEDIAN_S, duration_sigma=TASK_SIGMA, starting_balance=1_000_000,
        rate_limit_requests=args.rate_limit, rate_limit_window_s=300.0,
        rate_limit_per_second=max(5, args.rate_limit // 100),
        **{**FAULTS, **profile_values(profile)},  # type: ignore[arg-type]
        polling_window_s=_polling_window(profile, ts), profile=profile)


def resumable(run: Run) -> bool:
    """Rows of `run` that another run can still finish: pending with a task id (the next run polls
    it again) or pending with no candidate charge listed (the records could not tell yet). A lost
    create settled as ambiguous (its candidates listed) waits for a person, not for a run."""
    if run.report is None:
        return True
    pending = read_report(run.report).query("status == 'pending_reconcile'")
    return any(isinstance(r["task_id"], str) or not _candidates(r["note"])
               for r in pending.to_dict("records"))


def run_profile(args: argparse.Namespace, profile: str, prefect_url: str, tmp: Path) -> dict[str, Any]:
    """One bench under one sandbox profile in `tmp`: the runs, then the audit (a dict)."""
    t_start, ts = time.monotonic(), args.time_scale
    for sub in ("logs", "prefect"):
        (tmp / sub).mkdir(parents=True)
    settings = _sandbox_settings(args, profile)
    csv, df_in = draw_batch(tmp, args.rows, args.seed)
    pictures = df_in["prompt"].nunique()
    t = timing(ts)
    print(f"[{profile}] batch: {len(df_in)} rows, {pictures} distinct pictures, in {tmp}")
    print(f"[{profile}] sandbox profile {profile} {profile_values(profile) or ''}; polling window "
          f"{settings.polling_window_s:g} vendor s ({settings.polling_window_s / ts:g} s real)")
    if (why := fits(profile, ts)) is not None:
        print(f"[{profile}] WARNING: this profile cannot work at this time scale: {why}")
    runs: list[Run] = []
    with SandboxServer(settings) as sbx, httpx.Client(
            base_url=sbx.base_url, trust_env=False, timeout=30,
            headers={"Authorization": f"Bearer {KEY}"}) as admin:
        tap = JournalTap(admin)
        try:
            env = cli_env(sbx.base_url, prefect_url, tmp, ts, args.rate_limit)
            cmd = [str(BIN / "backdrop"), "run", str(csv), "--out", str(tmp / "out"),
                   "--concurrency", str(args.concurrency), "--json-output"]
            ledger_db, logs, out = tmp / "home" / "ledger.db", tmp / "logs", tmp / "out"
            first = run_cli(Run("run1"), cmd, env, logs, out, kill_at=(ledger_db, pictures // 2))
            runs.append(first)
            print(f"[{profile}] run1: SIGKILL after {first.seconds:.1f} s, "
                  f"{succeeded_pictures(ledger_db)} of {pictures} pictures succeeded in the ledger"
                  if first.killed else
                  f"[{profile}] run1: NOT killed (exit {first.code} after {first.seconds:.1f} s)")
            for name in ("run2", "run3"):
                run = run_cli(Run(name), cmd, env, logs, out)
                runs.append(run)
                s = run.summary
                keys = ("succeeded", "failed", "pending_reconcile", "reused", "units_charged",
                        "vendor_units")
                print(f"[{profile}] {name}: exit {run.code} in {run.seconds:.1f} s: " + (
                    ", ".join(f"{k} {s.get(k)}" for k in keys) if s else
                    f"no summary, see {logs / (name + '.err')}"))
                if s and not resumable(run):
                    break
                if name == "run2":
                    print(f"[{profile}]   rows a run can still finish (or no summary): a third run")
        finally:
            journal = tap.stop()
        last = runs[-1]
        if last.report is None or not last.summary:
            raise RuntimeError(f"{last.name} exited {last.code}{' (timed out)' if last.timed_out else ''} "
                               f"without a summary or a report: see {tmp / 'logs' / (last.name + '.err')}")
        reports = [read_report(r.report) for r in runs if r.report is not None]
        a = audit(tmp, df_in, admin, journal, reports, profile)
    a.update(runs=len(runs), killed=first.killed, wall_seconds=round(time.monotonic() - t_start, 1),
             reconcile_after_seconds=t["reconcile_after"], settle_wait_seconds=t["settle_wait"],
             run_seconds=[round(r.seconds, 1) for r in runs])
    print_audit(a)
    print(f"[{profile}] wall time {a['wall_seconds']:.1f} s ({len(runs)} runs: "
          + ", ".join(f"{r.name} {r.seconds:.0f} s" for r in runs) + ")")
    return a


def json_line(a: dict[str, Any]) -> dict[str, Any]:
    if "error" in a:
        return a
    st = a["status"]
    return {
        "profile": a["profile"], "rows_in": a["rows_in"], "rows_reported": a["rows_reported"],
        "reported_once": a["reported_once"], "succeeded": st.get("succeeded", 0),
        "failed": st.get("failed", 0), "pending_reconcile": a["pending"],
        "pending_why": a["pending_why"], "sandbox_units": a["sandbox_units"],
        "ledger_units": a["ledger_units"], "report_units": a["report_units"],
        "charged_unknown_to_backdrop": len(a["charged_unknown"]),
        "charged_only_as_candidates": len(a["charged_only_as_candidates"]),
        "created_twice_unflagged": a["twice_unflagged"], "wrong_picture_rows": len(a["wrong_task"]),
        "corrupt_outputs": len(a["corrupt"]), "runs": a["runs"], "killed": a["killed"],
        "checks_failed": [name for name, ok in checks(a).items() if not ok],
        "wall_seconds": a["wall_seconds"],
    }


def print_table(results: list[dict[str, Any]], load: int) -> None:
    print(f"\nprofile        rows in/reported  units sandbox/ledger/reports  unknown  twice unflagged  "
          f"wrong picture  pending  wall s   (load {load})")
    for a in results:
        if "error" in a:
            print(f"{a['profile']:<14} ERROR: {a['error']}")
            continue
        print(f"{a['profile']:<14} {a['rows_in']:>7}/{a['rows_reported']:<8} "
              f"{a['sandbox_units']:>12}/{a['ledger_units']}/{a['report_units']:<12} "
              f"{len(a['charged_unknown']):>7}  {a['twice_unflagged']:>15}  {len(a['wrong_task']):>13}  "
              f"{a['pending']:>7}  {a['wall_seconds']:>6.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--time-scale", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate-limit", type=int, default=2500,
                    help="requests per 300 vendor seconds, for the sandbox and the client alike")
    ap.add_argument("--profile", default="default",
                    help=f"the sandbox's vendor-variant profile ({', '.join(PROFILES)}), several "
                         "separated by commas, or 'all': each profile that can work at this time "
                         "scale, one after the other")
    ap.add_argument("--load", type=int, default=0,
                    help="busy processes (python -c 'while 1: pass') beside the batch")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    ts = args.time_scale
    if args.profile == "all":
        profiles = [p for p in PROFILES if fits(p, ts) is None]
        for p in PROFILES:
            if p not in profiles:
                print(f"skipping profile {p}: {fits(p, ts)}")
    else:
        profiles = [p.strip() for p in args.profile.split(",") if p.strip()]
        if unknown := [p for p in profiles if p not in PROFILES]:
            ap.error(f"unknown profile {', '.join(unknown)}; known: {', '.join(PROFILES)}, all")
    t = timing(ts)
    print(f"sandbox: time scale {ts:g}, task median {TASK_MEDIAN_S:g} vendor s "
          f"({TASK_MEDIAN_S / ts:.2f} s real), longest {LONGEST_TASK_S:.0f} vendor s; faults "
          + ", ".join(f"{k.removeprefix('fault_')}={v}" for k, v in FAULTS.items()))
    print(f"rate limits: {args.rate_limit} per 300 vendor s ({300 / ts:g} s real) and "
          f"{max(5, args.rate_limit // 100)} per vendor second; the client paces to the first")
    print(f"resumed runs: BACKDROP_RECONCILE_AFTER_SECONDS={t['reconcile_after']:g}, "
          f"BACKDROP_SETTLE_WAIT_SECONDS={t['settle_wait']:g}; load: {args.load} busy processes")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops everything
    logging.getLogger("uvicorn.error").addFilter(_not_a_client_disconnect)
    root = Path(tempfile.mkdtemp(prefix="backdrop-chaos-"))
    results: list[dict[str, Any]] = []
    load = start_load(args.load)
    prefect: subprocess.Popen[bytes] | None = None
    try:
        for n, profile in enumerate(profiles):
            t0 = time.monotonic()
            try:
                if prefect is None or prefect.poll() is not None:  # one server for every profile
                    prefect, prefect_url = start_prefect(root / f"prefect-server-{n}")
                results.append(run_profile(args, profile, prefect_url, root / profile))
            except Exception as exc:  # noqa: BLE001 - this profile failed; the others still run
                print(f"[{profile}] ERROR: {type(exc).__name__}: {exc}")
                results.append({"profile": profile, "error": f"{type(exc).__name__}: {exc}",
                                "wall_seconds": round(time.monotonic() - t0, 1)})
    finally:
        if prefect is not None:
            stop(prefect)
        stop_load(load)
    print_table(results, args.load)
    failed = [a for a in results if "error" in a or not all(checks(a).values())]
    if args.keep or failed:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps([json_line(a) for a in results]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
