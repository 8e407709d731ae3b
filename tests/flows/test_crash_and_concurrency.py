"""kill -9 in the middle, and two runs of one CSV at once: nothing is created twice, no row is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from prefect.settings import PREFECT_API_URL

from backdrop.store.ledger import Ledger
from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product

BIN = Path(sys.executable).parent


def _cli_env(sandbox: Any, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKDROP_", "PREFECT_"))}
    env.update(BACKDROP_API_URL=sandbox.base_url, BACKDROP_API_KEY=sandbox.api_key, BACKDROP_ACCOUNT=sandbox.api_key,
               BACKDROP_HOME=str(tmp_path / "home"), BACKDROP_POLL_FIRST_SECONDS="0.05",
               BACKDROP_POLL_INTERVAL_SECONDS="0.05", BACKDROP_POLL_MAX_INTERVAL_SECONDS="0.2",
               PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_HOME=str(tmp_path / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               # the CLI reads CSVs and writes outputs only in its roots (default its current folder): the test's
               BACKDROP_INPUT_ROOTS=str(tmp_path), BACKDROP_OUTPUT_ROOTS=str(tmp_path),
               # the test server's SQLite answers 500 "database is locked" under two busy clients
               PREFECT_CLIENT_RETRY_EXTRA_CODES="500")
    return env


def _rows(tmp_path: Path, n: int) -> Path:
    for i in range(n):
        draw_product(tmp_path / f"{i}.jpg", (20 + 25 * i, 60, 200 - 20 * i))
    return write_csv(tmp_path, [{"id": f"r{i}", "image_url": f"{i}.jpg", "prompt": "beach"} for i in range(n)])


def test_kill_9_mid_batch_then_resume_creates_nothing_twice(
    pipeline_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline_env.configure(duration_mode="fixed", duration_median_s=1.0)
    csv = _rows(tmp_path, 8)
    (tmp_path / "home").mkdir()
    ledger = Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    proc = subprocess.Popen([str(BIN / "backdrop"), "run", str(csv), "--out", str(tmp_path / "out"),
                             "--concurrency", "4"], env=_cli_env(pipeline_env, tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            states = [e.status for e in ledger.entries()]
            if "succeeded" in states and "created" in states and "creating" not in states:
                break
            assert proc.poll() is None, "the batch finished before it could be killed"
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no cleanup, no report
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = sum(1 for e in ledger.entries() if e.status == "succeeded")
    assert 0 < done_before < 8 and not (tmp_path / "out" / "report.csv").exists()

    pipeline_env.configure(duration_mode="immediate")
    monkeypatch.setenv("BACKDROP_RECONCILE_AFTER_SECONDS", "0")
    _, df = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert list(df["status"]) == ["succeeded"] * 8
    assert int(df["reused"].sum()) == done_before
    assert len(pipeline_env.tasks()) == 8  # one vendor task per picture, across both runs
    charged = pipeline_env.ledger()["starting_balance"] - pipeline_env.ledger()["balance"]
    assert charged == 32 == sum(e.units for e in ledger.entries())
    for path in df["output_path"]:
        with Image.open(path) as im:
            im.load()


def test_two_runs_of_one_csv_at_once_create_each_picture_once(pipeline_env: Any, tmp_path: Path) -> None:
    pipeline_env.configure(duration_mode="fixed", duration_median_s=0.3)
    csv = _rows(tmp_path, 6)
    env = _cli_env(pipeline_env, tmp_path)
    procs = [subprocess.Popen([str(BIN / "backdrop"), "run", str(csv), "--out", str(tmp_path / f"out{i}"),
                               "--concurrency", "6", "--json-output"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for i in (1, 2)]
    for p in procs:
        p.communicate(timeout=180)
    codes = [p.returncode for p in procs]
    reports = [pd.read_csv(tmp_path / f"out{i}" / "report.csv") for i in (1, 2)]
    assert codes == [0, 0], [r[r["status"] != "succeeded"][["error_code", "error_message"]].to_dict("records")
                             for r in reports]
    assert all(list(r["status"]) == ["succeeded"] * 6 for r in reports)
    assert len(pipeline_env.tasks()) == 6
    assert sum(int(r["units_charged"].sum()) for r in reports) == 24
    assert pipeline_env.ledger()["starting_balance"] - pipeline_env.ledger()["balance"] == 24
