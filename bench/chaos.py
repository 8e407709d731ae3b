"""Chaos bench: a batch against a faulty sandbox, killed with SIGKILL half-way, then resumed.

    python bench/chaos.py [--rows 500] [--seed 7] [--time-scale 50] [--concurrency 16] [--keep]

Draws distinct product pictures (plus a few duplicate rows) and a CSV, starts a sandbox with a
seeded fault mix and one Prefect server, runs `backdrop run` as a subprocess, kills it with
SIGKILL once about half the pictures are `succeeded` in Backdrop's ledger, runs it again with
BACKDROP_RECONCILE_AFTER_SECONDS=0 (a third time if rows are still pending), then audits the
final report against the sandbox's ledger, tasks and journal. The last line is one JSON object.
Every picture has its own prompt, so a vendor task maps back to its picture by prompt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
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

from backdrop.sandbox import SandboxServer, SandboxSettings  # noqa: E402

BIN = Path(sys.executable).parent
KEY = "sandbox-chaos"
BACKDROPS = ["white marble", "warm wood", "sunny beach", "grey concrete", "blue studio",
             "pink pastel", "green garden", "black marble", "sunset beach", "beige linen"]
FAULTS = dict(fault_5xx_rate=0.10, fault_drop_rate=0.05, fault_429_burst_rate=0.02,
              fault_engine_error_rate=0.05, fault_lost_create_rate=0.02, fault_slow_rate=0.03,
              fault_slow_s=5.0)


@dataclass
class Run:
    name: str
    code: int | None = None
    seconds: float = 0.0
    killed: bool = False
    summary: dict[str, Any] = field(default_factory=dict)


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


def run_cli(run: Run, cmd: list[str], env: dict[str, str], logs: Path, *,
            kill_at: tuple[Path, int] | None = None, timeout: float = 1200.0) -> Run:
    """Run the CLI; with `kill_at=(ledger, n)`, SIGKILL it once n pictures succeeded there."""
    t0 = time.monotonic()
    with open(logs / f"{run.name}.out", "wb") as out, open(logs / f"{run.name}.err", "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            if kill_at and succeeded_pictures(kill_at[0]) >= kill_at[1]:
                proc.send_signal(signal.SIGKILL)
                run.killed = True
                break
            time.sleep(0.1)
        if proc.poll() is None and not run.killed:
            proc.kill()
        run.code = proc.wait(30)
    run.seconds = time.monotonic() - t0
    lines = (logs / f"{run.name}.out").read_text().strip().splitlines()
    if lines and lines[-1].startswith("{"):
        run.summary = json.loads(lines[-1])
    return run


def cli_env(sandbox_url: str, prefect_url: str, tmp: Path, ts: float, rate: int) -> dict[str, str]:
    """The CLI's environment: vendor-time settings divided by the time scale, like the sandbox's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKDROP_", "PREFECT_"))}
    vendor_seconds = dict(POLL_FIRST_SECONDS=8, POLL_INTERVAL_SECONDS=2,
                          POLL_MAX_INTERVAL_SECONDS=30, POLL_DEADLINE_SECONDS=900,
                          BACKOFF_BASE_SECONDS=1, BACKOFF_MAX_SECONDS=30,
                          RATE_LIMIT_WINDOW_SECONDS=300)
    env.update({f"BACKDROP_{k}": str(v / ts) for k, v in vendor_seconds.items()})
    env.update(BACKDROP_API_URL=sandbox_url, BACKDROP_API_KEY=KEY, BACKDROP_HOME=str(tmp / "home"),
               BACKDROP_RATE_LIMIT_REQUESTS=str(rate), BACKDROP_RATE_LIMIT_PER_SECOND=str(rate / 2),
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


def audit(tmp: Path, df_in: pd.DataFrame, admin: httpx.Client,
          journal: dict[str, Any]) -> dict[str, Any]:
    """The final report against the sandbox's ledger and tasks, and Backdrop's ledger.

    Backdrop's ledger is this bench's own (a fresh BACKDROP_HOME): every row is this environment's.
    """
    from backdrop.ledger import Ledger

    out = tmp / "out"
    report = pd.read_csv(out / "report.csv", keep_default_na=False, na_values=[""])
    charges = admin.get("/_sandbox/ledger").json()["charges"]
    tasks = admin.get("/_sandbox/tasks").json()
    entries = Ledger(f"sqlite:///{tmp / 'home' / 'ledger.db'}").entries()
    by_task = {t["task_id"]: t for t in tasks}
    wins = Counter(t["prompt"] for t in tasks if t["status"] == "success")
    twice = {p for p, n in wins.items() if n > 1}
    flagged = set(report[report["possible_duplicate"].astype(bool)]["prompt"])
    ok = report[report["status"] == "succeeded"].to_dict("records")
    sizes = {}
    for url in df_in["image_url"].unique():
        with Image.open(tmp / url) as im:
            sizes[url] = im.size
    outputs = {Path(p) for p in report["output_path"].dropna()} | set(out.glob("*.jpg"))
    known = {e.task_id for e in entries if e.task_id}
    by_status = report.groupby("status")["error_code"]
    return {
        "rows_in": len(df_in), "rows_reported": len(report),
        "reported_once": list(report.sort_values("line")["line"]) == list(range(1, len(df_in) + 1))
        and list(report.sort_values("line")["row_id"]) == list(df_in["id"]),
        "status": dict(Counter(report["status"])),
        "codes": {s: dict(Counter(c.fillna("?"))) for s, c in by_status if s != "succeeded"},
        "ledger_units": sum(c["units"] for c in charges),
        "report_units": sum(e.units for e in entries),
        "final_report_units": int(report["units_charged"].sum()),
        "charged_unknown": [c["task_id"] for c in charges if c["task_id"] not in known],
        "vendor_tasks": dict(Counter(t["status"] for t in tasks)),
        "twice": len(twice), "twice_unflagged": len(twice - flagged),
        "flagged_rows": int(report["possible_duplicate"].astype(bool).sum()),
        "wrong_task": [r["row_id"] for r in ok if r["task_id"] in by_task
                       and by_task[r["task_id"]]["prompt"] != r["prompt"]],
        "wrong_size": [r["row_id"] for r in ok if (r["width"], r["height"]) != sizes[r["input"]]],
        "outputs": len(outputs), "corrupt": sorted(str(p) for p in outputs if not decodes(p)),
        "leftover_tmp": sorted(p.name for p in out.glob(".*") if p.is_file()),
        "faults": dict(Counter(e["fault"] for e in journal.values() if e.get("fault"))),
        "requests": len(journal), "ledger_states": dict(Counter(e.status for e in entries)),
        "environments": len({e.environment for e in entries}),
    }


def print_audit(a: dict[str, Any]) -> None:
    st = a["status"]
    print(f"rows in {a['rows_in']}, rows in the report {a['rows_reported']} "
          f"(each exactly once: {'yes' if a['reported_once'] else 'NO'})")
    print(f"succeeded {st.get('succeeded', 0)}, failed {st.get('failed', 0)} "
          f"{a['codes'].get('failed', {})}, pending_reconcile {st.get('pending_reconcile', 0)} "
          f"{a['codes'].get('pending_reconcile', {})}, skipped {st.get('skipped', 0)}")
    print(f"units: sandbox ledger {a['ledger_units']}, Backdrop's ledger {a['report_units']} "
          f"(final report alone {a['final_report_units']}); charged tasks Backdrop does not know: "
          f"{len(a['charged_unknown'])}")
    print(f"vendor tasks {a['vendor_tasks']}; pictures created twice {a['twice']} (not flagged "
          f"possible_duplicate in the report: {a['twice_unflagged']}); flagged rows "
          f"{a['flagged_rows']}")
    print(f"succeeded rows holding another picture's task: {len(a['wrong_task'])}, with an output "
          f"of the wrong size: {len(a['wrong_size'])}")
    print(f"outputs {a['outputs']}, failing to decode {len(a['corrupt'])}, leftover temporary "
          f"files {len(a['leftover_tmp'])}")
    print(f"faults injected {a['faults']} in {a['requests']} journaled requests; Backdrop's ledger "
          f"{a['ledger_states']} ({a['environments']} environment)")


def _not_a_client_disconnect(record: logging.LogRecord) -> bool:
    """The killed run leaves requests half-sent, and the sandbox logs each: expected here."""
    exc = record.exc_info[1] if record.exc_info else None
    return type(exc).__name__ != "ClientDisconnect"


def _sandbox_settings(args: argparse.Namespace) -> SandboxSettings:
    ts = args.time_scale
    return SandboxSettings(
        api_keys=[KEY], seed=args.seed, time_scale=ts, duration_mode="lognormal",
        duration_median_s=10.0, duration_sigma=0.4, starting_balance=1_000_000,
        rate_limit_requests=args.rate_limit, rate_limit_window_s=300.0,
        rate_limit_per_second=max(5, args.rate_limit // 100),
        # the vendor's polling window is unknown: keep it longer than a restart takes here
        polling_window_s=max(600.0, 120 * ts), **FAULTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--time-scale", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate-limit", type=int, default=2500,
                    help="requests per 300 vendor seconds, for the sandbox and the client alike")
    ap.add_argument("--ambiguous-policy", choices=["wait", "recreate_once"], default="wait",
                    help="BACKDROP_AMBIGUOUS_POLICY for the runs after the kill")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    t_start, ts = time.monotonic(), args.time_scale
    tmp = Path(tempfile.mkdtemp(prefix="backdrop-chaos-"))
    for sub in ("logs", "prefect"):
        (tmp / sub).mkdir()
    settings = _sandbox_settings(args)
    logging.getLogger("uvicorn.error").addFilter(_not_a_client_disconnect)
    csv, df_in = draw_batch(tmp, args.rows, args.seed)
    pictures = df_in["prompt"].nunique()
    print(f"batch: {len(df_in)} rows, {pictures} distinct pictures, in {tmp}")
    print(f"sandbox: time scale {ts:g}, task median 10 vendor s ({10 / ts:.2f} s real), faults "
          + ", ".join(f"{k.removeprefix('fault_')}={v}" for k, v in FAULTS.items()))
    print(f"rate limits: {args.rate_limit} per 300 vendor s ({300 / ts:g} s real) and "
          f"{settings.rate_limit_per_second} per vendor second; the client paces to the first")
    prefect, prefect_url = start_prefect(tmp / "prefect")
    runs: list[Run] = []
    try:
        with SandboxServer(settings) as sbx, httpx.Client(
                base_url=sbx.base_url, trust_env=False, timeout=30,
                headers={"Authorization": f"Bearer {KEY}"}) as admin:
            tap = JournalTap(admin)
            env = cli_env(sbx.base_url, prefect_url, tmp, ts, args.rate_limit)
            cmd = [str(BIN / "backdrop"), "run", str(csv), "--out", str(tmp / "out"),
                   "--concurrency", str(args.concurrency), "--json-output"]
            ledger_db = tmp / "home" / "ledger.db"
            first = run_cli(Run("run1"), cmd, env, tmp / "logs", kill_at=(ledger_db, pictures // 2))
            runs.append(first)
            print(f"run1: SIGKILL after {first.seconds:.1f} s, {succeeded_pictures(ledger_db)} of "
                  f"{pictures} pictures succeeded in the ledger" if first.killed else
                  f"run1: NOT killed (exit {first.code} after {first.seconds:.1f} s)")
            env.update(BACKDROP_RECONCILE_AFTER_SECONDS="0",
                       BACKDROP_AMBIGUOUS_POLICY=args.ambiguous_policy)
            for name in ("run2", "run3"):
                run = run_cli(Run(name), cmd, env, tmp / "logs")
                runs.append(run)
                s = run.summary
                keys = ("succeeded", "failed", "pending_reconcile", "reused", "units_charged",
                        "vendor_units")
                print(f"{name}: exit {run.code} in {run.seconds:.1f} s: " + (
                    ", ".join(f"{k} {s.get(k)}" for k in keys) if s else
                    f"no summary, see {tmp / 'logs' / (name + '.err')}"))
                if not s.get("pending_reconcile"):
                    break
                if name == "run2":
                    print(f"  {s['pending_reconcile']} rows still pending_reconcile: a third run")
            a = audit(tmp, df_in, admin, tap.stop())
    finally:
        stop(prefect)
    wall = time.monotonic() - t_start
    print_audit(a)
    print(f"wall time {wall:.1f} s ({len(runs)} runs)")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    st = a["status"]
    print(json.dumps({
        "rows_in": a["rows_in"], "rows_reported": a["rows_reported"],
        "succeeded": st.get("succeeded", 0), "failed": st.get("failed", 0),
        "pending_reconcile": st.get("pending_reconcile", 0), "ledger_units": a["ledger_units"],
        "report_units": a["report_units"], "created_twice_unflagged": a["twice_unflagged"],
        "corrupt_outputs": len(a["corrupt"]), "wrong_task_rows": len(a["wrong_task"]),
        "charged_unknown_to_backdrop": len(a["charged_unknown"]), "runs": len(runs),
        "wall_seconds": round(wall, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
