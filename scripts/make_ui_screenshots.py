"""Screenshots of the Prefect UI for the README, from a real run: docs/ui-flow-run.png, ui-summary.png, ui-run-form.png.

Starts a Prefect server with its UI in a temporary folder, creates the process work pool, deploys prefect.yaml,
starts the sandbox and a process worker, and runs the `manual` deployment as the Custom run form does (a typed
run name; the demo's first pictures plus one row the vendor's engine refuses). Once the run is final, headless
Chromium (driven through DevTools, tests/support/devtools.py) shows: the flow run page, the summary artifact with
its embedded contact sheet and the refused row's thumbnail, and the deployment's Custom run form. Each page is
captured once it shows its own content and has stopped changing; each PNG is shrunk as make_readme_images.py
does (a 256-colour palette over 200 KB) and must stay under 400 KB.
The UI is the one the server opens by default (its /ui-settings), or `--ui v1|v2`.
Usage: `python scripts/make_ui_screenshots.py [--docs docs] [--rows 5] [--ui default]` (2 to 4 minutes;
needs Chromium). Everything it starts is stopped and its temporary folder removed.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backdrop.cli.sandbox import SANDBOX_KEY, sandbox_process  # noqa: E402
from scripts.make_readme_images import MAX_BYTES, _shrink  # noqa: E402
from tests.deployments.helpers import deploy_all, prefect_server, prefect_worker, wait_final  # noqa: E402
from tests.support.chromium import ChromiumError  # noqa: E402
from tests.support.devtools import Browser, browser  # noqa: E402

POOL = "backdrop-process"
RUN_NAME = "Spring catalogue"
TIME_SCALE = 20.0  # the sandbox's vendor time runs 20 times faster: a run takes seconds, not minutes
REFUSED = " [[sandbox:error=error_inference]]"  # the sandbox's engine fails this row, as the vendor's may
PALETTE_OVER = 200_000  # bytes: a screenshot bigger than this is kept as a 256-colour palette (MAX_BYTES at most)


def _batch(folder: Path, rows: int) -> Path:
    """The demo's first `rows` rows and pictures, and the next one with a prompt the sandbox's engine refuses."""
    demo = ROOT / "backdrop" / "demo"
    with (demo / "products.csv").open(newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))[: rows + 1]
    records[-1]["prompt"] += REFUSED
    folder.mkdir()
    for record in records:
        shutil.copy(demo / record["image_url"], folder / record["image_url"])
    path = folder / "products.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def _worker_env(sandbox_url: str, work: Path) -> dict[str, str]:
    """The worker's settings: the sandbox as the vendor (its key, its address opened), poll times in its scale."""
    scaled = {f"BACKDROP_{name}": str(seconds / TIME_SCALE) for name, seconds in (
        ("POLL_FIRST_SECONDS", 8.0), ("POLL_INTERVAL_SECONDS", 2.0), ("POLL_MAX_INTERVAL_SECONDS", 30.0))}
    return {"BACKDROP_API_URL": sandbox_url, "BACKDROP_API_KEY": SANDBOX_KEY, "BACKDROP_ACCOUNT": SANDBOX_KEY,
            "BACKDROP_FETCH_ALLOW_NETWORKS": "127.0.0.1/32", "BACKDROP_HOME": str(work / "backdrop-home"),
            "BACKDROP_INPUT_ROOTS": str(work), "BACKDROP_OUTPUT_ROOTS": str(work),
            "PREFECT_WORKER_QUERY_SECONDS": "1", **scaled}


def _ui_base(root_url: str, choice: str) -> str:
    """The UI's base URL: the server's default UI (what a new browser gets at its root), or the one asked for."""
    with httpx.Client(trust_env=False, timeout=30.0) as http:
        ui: dict[str, Any] = http.get(f"{root_url}/ui-settings").raise_for_status().json()
    version = ui.get("default_ui", "v1") if choice == "default" else choice
    base = ui.get(f"{version}_base_url") or ("/v2" if version == "v2" else "/")
    return root_url + base.rstrip("/")


def _shots(tab: Browser, ui: str, ids: dict[str, str], raw: Path) -> list[Path]:
    """The three pages, each captured once it shows what it is for."""
    pages = [
        ("ui-flow-run.png", f"/runs/flow-run/{ids['run']}", [RUN_NAME, "Completed with failures"], 1000),
        ("ui-summary.png", f"/artifacts/artifact/{ids['summary']}", ["Backdrop batch", "Rows that did not succeed"],
         1750),
        ("ui-run-form.png", f"/deployments/deployment/{ids['deployment']}/run", ["concurrency", "max_units"], 1300),
    ]
    shots = []
    for name, path, texts, height in pages:
        tab.resize(1440, height)
        tab.open(ui + path, texts)
        shots.append(tab.screenshot(raw / name))
    return shots


def _run_manual(api: httpx.Client, batch: Path, out: Path, diagnose: Any) -> dict[str, str]:
    """Start `manual` as the form does; wait for its end; the ids of the run, its summary and the deployment."""
    deployment = api.get("/deployments/name/change-backgrounds/manual").raise_for_status().json()["id"]
    created = api.post(f"/deployments/{deployment}/create_flow_run", json={
        "name": RUN_NAME, "parameters": {"csv": str(batch), "out": str(out)}}).raise_for_status().json()
    run = wait_final(api, created["id"], 300.0, diagnose)
    print(f"run {run['name']!r}: {run['state_name']} ({run['state']['message']})")
    flt = {"artifacts": {"flow_run_id": {"any_": [run["id"]]}, "key": {"any_": ["backdrop-summary"]}}}
    summary = api.post("/artifacts/filter", json=flt).raise_for_status().json()
    if not summary:
        raise SystemExit(f"the run made no summary artifact\n{diagnose()}")
    return {"run": run["id"], "summary": summary[0]["id"], "deployment": deployment}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default=ROOT / "docs", type=Path, help="folder for the PNGs (default docs/)")
    parser.add_argument("--rows", default=5, type=int, help="demo rows that succeed (one refused row is added)")
    parser.add_argument("--ui", default="default", choices=["default", "v1", "v2"],
                        help="which Prefect UI to show (default: the one the server opens by default)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="backdrop-ui-shots-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        batch = _batch(work / "batch", args.rows)
        with prefect_server(work / "prefect-home", work / "logs", ui=True) as srv:
            deploy_all(srv, POOL)
            with sandbox_process(TIME_SCALE) as sandbox_url, \
                    prefect_worker(srv, POOL, _worker_env(sandbox_url, work), work / "logs" / "worker.log",
                                   name="sandbox-worker") as worker, \
                    httpx.Client(base_url=srv.api_url, trust_env=False, timeout=30.0) as api:
                ids = _run_manual(api, batch, work / "out",
                                  lambda: f"{worker.tail()}\n{srv.process.tail(1500)}")
            ui = _ui_base(srv.api_url.removesuffix("/api"), args.ui)
            print(f"UI at {ui}")
            try:
                with browser() as tab:
                    raw = _shots(tab, ui, ids, work / "raw")
            except ChromiumError as exc:
                print(f"cannot screenshot the UI: {exc}", file=sys.stderr)
                return 1
        sizes = {}
        for png in raw:
            sizes[png.name] = _shrink(png, args.docs / png.name, PALETTE_OVER)
            print(f"wrote {args.docs / png.name} ({sizes[png.name] // 1000} KB)")
    return 0 if all(size <= MAX_BYTES for size in sizes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
