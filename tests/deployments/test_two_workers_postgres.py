"""Beyond one machine: two Prefect workers, one Prefect server on PostgreSQL, one key, one budget.

Each worker stands for a host: its own PREFECT_HOME and BACKDROP_HOME, the same BACKDROP_LEDGER_URL and
BACKDROP_LIMITER_URL on PostgreSQL. Two runs of the manual deployment, started through the API as the UI
starts them, each take one worker (`--limit 1`). Their CSVs overlap. The sandbox's rate limit is small
(20 requests per 5 s, 5 per second), so that either worker alone could fill it: together they must still
never see a 429, and no picture may be created, or paid for, twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest

from tests.deployments.helpers import (
    PrefectServer,
    deployed_server,
    prefect_api,
    prefect_worker,
    run_logs,
    wait_final,
)
from tests.support.images import numbered_products
from tests.support.sandbox import SandboxHandle
from tests.support.services import fresh_postgres_database

pytestmark = [pytest.mark.prefect_server, pytest.mark.postgres]

POOL = "backdrop-process"
# Real time, as at the vendor (a sandbox run faster shrinks its 1 s window below a busy event loop's
# stalls), with a short long window: 20 requests per 5 s binds before 5 per second does.
WINDOW_SECONDS = 5.0
WINDOW_REQUESTS = 20  # per window; either worker alone would fill it
PICTURES = 24
OVERLAP = 4  # pictures in both CSVs


@pytest.fixture(scope="module")
def databases() -> Iterator[tuple[str, str]]:
    """(Prefect's database, Backdrop's ledger and limiter database), both fresh."""
    with fresh_postgres_database("backdrop_prefect") as prefect_db, \
            fresh_postgres_database("backdrop_shared") as shared_db:
        yield prefect_db, shared_db


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, databases: tuple[str, str]) -> Iterator[PrefectServer]:
    asyncpg_url = "postgresql+asyncpg://" + databases[0].split("://", 1)[1]
    with deployed_server(tmp_path_factory, "prefect-pg", POOL, database_url=asyncpg_url) as (srv, _):
        yield srv


def _csv(folder: Path, name: str, pictures: list[str]) -> Path:
    rows = [{"id": Path(p).stem, "image_url": p, "prompt": "pale linen backdrop"} for p in pictures]
    pd.DataFrame(rows).to_csv(folder / name, index=False)
    return folder / name


def _worker_env(sandbox: SandboxHandle, shared_db: str, home: Path) -> dict[str, str]:
    return {
        "BACKDROP_API_URL": sandbox.base_url, "BACKDROP_API_KEY": sandbox.api_key, "BACKDROP_HOME": str(home),
        "BACKDROP_ACCOUNT": sandbox.api_key,  # each sandbox key is an account of its own
        "BACKDROP_LEDGER_URL": shared_db, "BACKDROP_LIMITER_URL": shared_db,
        "BACKDROP_RATE_LIMIT_REQUESTS": str(WINDOW_REQUESTS), "BACKDROP_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "BACKDROP_POLL_FIRST_SECONDS": "0.5", "BACKDROP_POLL_INTERVAL_SECONDS": "0.25",
        "BACKDROP_POLL_MAX_INTERVAL_SECONDS": "1", "BACKDROP_BACKOFF_BASE_SECONDS": "0.2",
        "BACKDROP_BACKOFF_MAX_SECONDS": "2", "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


def test_two_workers_share_the_key_s_limit_and_never_pay_twice(
        server: PrefectServer, databases: tuple[str, str], sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.configure(duration_mode="fixed", duration_median_s=1.0,
                      rate_limit_requests=WINDOW_REQUESTS, rate_limit_window_s=WINDOW_SECONDS,
                      rate_limit_per_second=5)
    pictures = numbered_products(tmp_path / "batch", PICTURES)
    half = (PICTURES + OVERLAP) // 2
    csvs = [_csv(tmp_path / "batch", "a.csv", pictures[:half]),
            _csv(tmp_path / "batch", "b.csv", pictures[half - OVERLAP:])]
    before = sandbox.ledger()["balance"]
    for i in (0, 1):
        (tmp_path / f"host{i}" / "prefect").mkdir(parents=True)

    with ExitStack() as stack, prefect_api(server) as api:
        workers = [stack.enter_context(prefect_worker(
            server, POOL, _worker_env(sandbox, databases[1], tmp_path / f"host{i}" / "backdrop"),
            tmp_path / f"worker{i}.log", name=f"host{i}", limit=1, home=tmp_path / f"host{i}" / "prefect"))
            for i in (0, 1)]
        manual = api.get("/deployments/name/change-backgrounds/manual").raise_for_status().json()
        run_ids = []
        for i, csv in enumerate(csvs):
            created = api.post(f"/deployments/{manual['id']}/create_flow_run",
                               json={"parameters": {"csv": str(csv), "out": str(tmp_path / f"out{i}")},
                                     "job_variables": {"env": {"BACKDROP_INPUT_ROOTS": str(tmp_path),
                                                               "BACKDROP_OUTPUT_ROOTS": str(tmp_path)}}})
            assert created.status_code == 201, created.text
            run_ids.append(created.json()["id"])

        def diagnose() -> str:
            return "\n".join([*(w.tail() for w in workers), server.process.tail(1500),
                              *(run_logs(api, r)[-2000:] for r in run_ids)])

        runs = [wait_final(api, r, 240.0, diagnose) for r in run_ids]
        assert [(r["state_type"], r["state_name"]) for r in runs] == [("COMPLETED", "Completed")] * 2, diagnose()
        worker_logs = [w.log.read_text(errors="replace") for w in workers]
        seen = diagnose()

    # each worker, a host of its own, ran one of the two runs (a worker may try a run the other one took)
    ran = [[r for r in run_ids if f"runs/flow-run/{r}" in log] for log in worker_logs]
    assert sorted(map(len, ran)) == [1, 1] and ran[0] != ran[1], seen

    journal = sandbox.journal()
    api_requests = [e for e in journal if e.get("route") in ("file", "create", "poll")]
    # several windows' worth, so the limit bound throughout: a picture is a create, a poll or more, and a share of
    # a batched upload-slot call (BACKDROP_UPLOAD_BATCH), so 24 pictures make more than two windows
    assert len(api_requests) >= 2 * WINDOW_REQUESTS
    assert [e for e in journal if e["status"] == 429] == []

    reports = [pd.read_csv(tmp_path / f"out{i}" / "report.csv") for i in (0, 1)]
    assert [len(r) for r in reports] == [half, PICTURES - half + OVERLAP]
    both = pd.concat(reports)
    assert set(both["status"]) == {"succeeded"}
    assert int(both["units_charged"].sum()) == 4 * PICTURES  # each picture paid once, in one report
    tasks = sandbox.tasks()
    assert len(tasks) == PICTURES  # the overlapping pictures were created once, by one of the runs
    assert before - sandbox.ledger()["balance"] == 4 * PICTURES
    shared = both.groupby("row_id")["task_id"].nunique()
    assert (shared == 1).all()  # a picture in both CSVs got the same task in both reports
