"""prefect.yaml deployed to a real Prefect server, run by a real process worker against the sandbox.

The run starts the way the UI starts it (POST create_flow_run on the deployment) and is judged by
what a user sees: the final state, report.csv, the pictures, the sandbox's credit ledger, the
artifacts (with the pictures embedded in the summary), the event an automation would act on, and
the absence of the API key from everything Prefect stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
import pytest
from PIL import Image

from tests.deployments.helpers import (
    ROOT,
    PrefectServer,
    deployed_server,
    embedded_pictures,
    prefect_api,
    prefect_worker,
    read_events,
    run_logs,
    wait_final,
)
from tests.support.images import draw_product
from tests.support.sandbox import SandboxHandle
from tests.support.waiting import wait_until

pytestmark = pytest.mark.prefect_server

POOL = "backdrop-process"

# Prefect 3.8.8's scheduler bulk-inserted run dicts that carry a "state" key. FlowRun.state is a hybrid
# property, and SQLAlchemy 2.1 refuses a hybrid without a bulk_dml setter in a bulk INSERT: the server
# scheduled no run at all, and said so only in its log. 3.9.1 inserts the state apart; the schedule test
# below fails at once on that message, and in any case when no run appears.
BULK_DML_ERROR = "Can't evaluate bulk DML statement"
PARIS = ZoneInfo("Europe/Paris")
FAILURES_EVENT = "backdrop.batch.completed-with-failures"  # the name automations.yaml and users' triggers match
GREEN = (30, 200, 30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real server with the work pool and every deployment of prefect.yaml on it."""
    with deployed_server(tmp_path_factory, "prefect", POOL) as (srv, out):
        assert "change-backgrounds/manual" in out and "change-backgrounds/inbox-nightly" in out, out
        yield srv


def _batch(folder: Path) -> Path:
    """Four rows: two real product pictures, a text file named like a picture, and a real picture the
    vendor's engine refuses (a sandbox marker in its prompt)."""
    folder.mkdir()
    draw_product(folder / "red.jpg", (200, 30, 30))
    draw_product(folder / "blue.jpg", (30, 30, 200))
    draw_product(folder / "green.jpg", GREEN)
    (folder / "broken.jpg").write_text("this is not a picture")
    rows = [{"id": n, "image_url": f"{n}.jpg", "prompt": "white studio backdrop", "sku": f"SKU-{n}"}
            for n in ("red", "blue", "broken", "green")]
    rows[-1]["prompt"] += " [[sandbox:error=error_inference]]"
    path = folder / "photos.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _check_deployments(api: httpx.Client) -> str:
    """Both deployments are on the server as prefect.yaml says; returns the manual one's id."""
    deps = {}
    for name in ("manual", "inbox-nightly"):
        resp = api.get(f"/deployments/name/change-backgrounds/{name}")
        assert resp.status_code == 200, resp.text
        deps[name] = resp.json()
    for dep in deps.values():
        assert (dep["work_pool_name"], dep["work_queue_name"]) == (POOL, "default")
        assert dep["entrypoint"] == "flows/change_backgrounds.py:change_backgrounds"
        assert dep["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
        assert dep["enforce_parameter_schema"] is True
    nightly = deps["inbox-nightly"]
    schedules = [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"])
                 for s in nightly["schedules"]]
    assert schedules == [("0 2 * * *", "Europe/Paris", True)]
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert deps["manual"]["schedules"] == []
    return str(deps["manual"]["id"])


def _logs_until(api: httpx.Client, run_id: str, needle: str, deadline_s: float = 20.0) -> str:
    """The run's logs once `needle` is among them: logs reach the API in batches, maybe late."""
    seen = [""]

    def found() -> bool:
        seen[0] = run_logs(api, run_id)
        return needle in seen[0]

    wait_until(found, deadline_s, interval=0.5)
    return seen[0]


def test_the_manual_deployment_runs_on_a_process_worker_against_the_sandbox(
        server: PrefectServer, sandbox: SandboxHandle, tmp_path: Path) -> None:
    csv, out = _batch(tmp_path / "batch"), tmp_path / "out"
    worker_env = {
        "BACKDROP_API_URL": sandbox.base_url, "BACKDROP_API_KEY": sandbox.api_key, "BACKDROP_ACCOUNT": sandbox.api_key,
        "BACKDROP_HOME": str(tmp_path / "backdrop-home"),
        "BACKDROP_POLL_FIRST_SECONDS": "0.05", "BACKDROP_POLL_INTERVAL_SECONDS": "0.05",
        "BACKDROP_POLL_MAX_INTERVAL_SECONDS": "0.2", "BACKDROP_BACKOFF_BASE_SECONDS": "0.05",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the default 10 s would dominate the test
    }
    before = sandbox.ledger()["balance"]

    with prefect_worker(server, POOL, worker_env, tmp_path / "worker.log") as worker, \
            prefect_api(server) as api:
        manual_id = _check_deployments(api)
        create = f"/deployments/{manual_id}/create_flow_run"

        # The run form is enforced server-side: an out-of-range value never becomes a run.
        refused = api.post(create, json={"parameters": {"csv": str(csv), "concurrency": 0}})
        assert refused.status_code == 409, refused.text
        assert "Validation failed for field 'concurrency'" in refused.text

        # The deployment's roots (prefect.yaml) hold no test folder: the environment as a CSV is refused, and
        # this run's folders are opened the way an operator opens them, with the run's job variables.
        environ = api.post(create, json={"parameters": {"csv": "/proc/self/environ", "out": "backdrop-output"}})
        assert environ.status_code == 201, environ.text
        roots = {"BACKDROP_INPUT_ROOTS": str(tmp_path), "BACKDROP_OUTPUT_ROOTS": str(tmp_path)}
        created = api.post(create, json={"parameters": {"csv": str(csv), "out": str(out)}, "name": "Spring photos",
                                         "job_variables": {"env": roots}})  # a name typed in the form
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        def diagnose() -> str:
            return (f"{worker.tail()}\n{server.process.tail(1500)}\n--- flow run logs ---\n"
                    f"{run_logs(api, run_id)[-3000:]}")

        run = wait_final(api, run_id, 180.0, diagnose)
        assert (run["state_type"], run["state_name"]) == ("COMPLETED", "Completed with failures"), \
            diagnose()
        assert run["state"]["message"] == "2 of 4 rows did not succeed"
        assert run["name"] == "Spring photos"  # the name the user typed is kept
        assert run["deployment_id"] == manual_id
        # the caller's values over the deployment's defaults
        assert run["parameters"] == {"csv": str(csv), "out": str(out), "concurrency": 8}
        by_run = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        found = api.post("/artifacts/filter", json=by_run)
        artifacts: list[dict[str, Any]] = found.raise_for_status().json()
        logs = _logs_until(api, run_id, "done: ")
        # the event a user's automation triggers on, read back from the server's event store
        events = wait_until(lambda: read_events(api, FAILURES_EVENT, f"backdrop.batch.{run_id}"), 30.0,
                            interval=0.5, message=f"no {FAILURES_EVENT} event for run {run_id}")
        refused = wait_final(api, environ.json()["id"], 120.0, diagnose)
        refused_logs = run_logs(api, refused["id"])
        worker_output = worker.log.read_text(errors="replace")

    _check_report_and_pictures(out, tmp_path / "batch")
    assert before - sandbox.ledger()["balance"] == 8  # two successes at 4 units; bad row is free
    _check_artifacts(artifacts, str(csv))
    _check_event(events or [], run_id, manual_id, str(csv))
    assert "done: 2 succeeded, 2 failed, 0 skipped, 0 pending; 8 units" in logs
    assert refused["state_type"] == "FAILED", refused
    # no name typed: the flow's run-name function ran in the worker (deployment, CSV, start time)
    assert re.fullmatch(r"manual/environ \d{4}-\d\d-\d\d \d\d:\d\dZ", refused["name"]), refused["name"]
    assert "outside the folders runs may read" in refused["state"]["message"], refused["state"]["message"]
    stored = {"flow run record": json.dumps(run), "run logs": logs,
              "artifacts": json.dumps(artifacts), "worker output": worker_output,
              "refused run record": json.dumps(refused), "refused run logs": refused_logs}
    for where, text in stored.items():
        assert sandbox.api_key not in text, f"the API key leaked into the {where}"


def _check_report_and_pictures(out: Path, inputs: Path) -> None:
    df = pd.read_csv(out / "report.csv", dtype={"http_status": "Int64"})
    rec = df.set_index("row_id")
    assert list(df["row_id"]) == ["red", "blue", "broken", "green"]
    assert rec["status"].to_dict() == {"red": "succeeded", "blue": "succeeded", "broken": "failed",
                                       "green": "failed"}
    assert rec.loc["broken", ["failed_stage", "error_code"]].tolist() == [
        "preflight", "error_decode_image"]
    assert rec.at["green", "error_code"] == "error_inference"
    assert rec["units_charged"].to_dict() == {"red": 4, "blue": 4, "broken": 0, "green": 0}
    assert rec["sku"].to_dict() == {"red": "SKU-red", "blue": "SKU-blue", "broken": "SKU-broken",
                                    "green": "SKU-green"}
    for name in ("red", "blue"):
        picture = Path(rec.at[name, "output_path"])
        assert picture.parent == out.resolve()
        data = picture.read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec.at[name, "output_sha256"]
        assert data != (inputs / f"{name}.jpg").read_bytes()
        with Image.open(picture) as im:
            im.load()
            assert (im.format, im.size) == ("JPEG", (320, 240))
    summary = json.loads((out / "summary.json").read_text())
    counts = [summary[k] for k in ("rows", "succeeded", "failed", "units_charged")]
    assert counts == [4, 2, 2, 8]
    assert pd.read_parquet(out / "report.parquet")["row_id"].tolist() == ["red", "blue", "broken", "green"]


def _check_artifacts(artifacts: list[dict[str, Any]], csv: str) -> None:
    by_key = {a["key"]: a for a in artifacts}
    assert {"backdrop-summary", "backdrop-failures", "backdrop-progress"} <= set(by_key), by_key
    summary = by_key["backdrop-summary"]
    assert summary["type"] == "markdown"
    for line in (f"# Backdrop batch: {csv}", "| 4 | 2 | 2 | 0 | 0 | 0 |",
                 "**Units charged:** 8 on 2 rows", "| `error_decode_image` | 1 |", "| `error_inference` | 1 |"):
        assert line in summary["data"], summary["data"]
    _check_embedded_pictures(summary["data"])
    for artifact in artifacts:  # a browser refuses file:// links from the UI's page
        assert "file://" not in json.dumps(artifact.get("data")), artifact
    failures = by_key["backdrop-failures"]
    assert failures["type"] == "table"
    table = json.loads(failures["data"]) if isinstance(failures["data"], str) else failures["data"]
    assert [(r["row_id"], r["failed_stage"], r["error_code"]) for r in table] == [
        ("broken", "preflight", "error_decode_image"), ("green", "task", "error_inference")]
    progress = by_key["backdrop-progress"]
    assert (progress["type"], progress["data"]) == ("progress", 100)


def _check_embedded_pictures(markdown: str) -> None:
    """The summary shows its pictures inline: the contact sheet, and the refused row's thumbnail in its table row
    beside its code; the broken file (no picture to show) says so in words."""
    pictures = embedded_pictures(markdown)
    assert [p.alt for p in pictures] == ["contact sheet: inputs and results", "green"], markdown[:2000]
    sheet, thumb = pictures
    assert (sheet.mime, sheet.fmt, thumb.mime, thumb.fmt) == ("image/jpeg", "JPEG", "image/jpeg", "JPEG")
    assert 400 <= sheet.size[0] <= 960 and 150 <= sheet.size[1] <= 960, sheet  # downscaled, still readable
    assert sheet.nbytes <= 120_000, sheet
    assert thumb.size == (96, 72), thumb  # the 320 x 240 input, thumbnailed
    assert all(abs(a - b) <= 40 for a, b in zip(thumb.centre, GREEN, strict=True)), thumb  # the green product
    rows = {line.split("|")[2].strip(): line for line in markdown.splitlines()
            if line.startswith("| ") and line.count("|") == 6}
    assert rows["green"].startswith("| ![green](data:image/jpeg;base64,"), rows
    assert "| failed | error_inference |" in rows["green"], rows["green"]
    assert "![" not in rows["broken"] and "| failed | error_decode_image |" in rows["broken"], rows["broken"]


def _check_event(events: list[dict[str, Any]], run_id: str, deployment_id: str, csv: str) -> None:
    """One event, about this batch, related to its flow run and deployment (what a trigger filters on)."""
    assert len(events) == 1, events
    event = events[0]
    assert event["payload"] == {"rows": 4, "failed": 2, "pending": 0, "not_attempted": 0, "units_charged": 8,
                                "csv": csv}, event
    related = {r["prefect.resource.id"] for r in event["related"]}
    assert {f"prefect.flow-run.{run_id}", f"prefect.deployment.{deployment_id}"} <= related, related


def test_the_server_schedules_the_nightly_runs_at_two_in_paris(server: PrefectServer) -> None:
    with prefect_api(server) as api:
        nightly = api.get("/deployments/name/change-backgrounds/inbox-nightly").raise_for_status()
        query = {"flow_runs": {"deployment_id": {"any_": [nightly.json()["id"]]}}}
        deadline, runs = time.monotonic() + 30.0, []
        while not runs and time.monotonic() < deadline:
            # the scheduler visits a new deployment within seconds; its failure is only in its log
            assert BULK_DML_ERROR not in server.process.tail(50_000), server.process.tail()
            runs = api.post("/flow_runs/filter", json=query).raise_for_status().json()
            time.sleep(0.5)
    assert runs, f"no run scheduled for inbox-nightly\n{server.process.tail()}"
    for run in runs:
        start = datetime.fromisoformat(run["expected_start_time"]).astimezone(PARIS)
        assert (run["state_type"], start.hour, start.minute) == ("SCHEDULED", 2, 0)
        assert run["parameters"]["max_units"] == 4000
