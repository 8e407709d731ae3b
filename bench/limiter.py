"""Limiter bench: what pacing through a database costs, on SQLite and on PostgreSQL.

    python bench/limiter.py [--n 2000] [--processes 4] [--postgres URL]

For each backend, one process takes `n` acquisitions in a row under a window too generous to ever
wait ((250, 10 ms)), so every figure is the limiter's own cost: acquisitions per second and the
latency of one `acquire()` (p50, p99), next to the in-process `SlidingWindowLimiter`. Then
`processes` processes acquire together on the same key (aggregate rate, per-call p50/p99). SQLite
runs on a temporary file; PostgreSQL (`--postgres`, default $BACKDROP_TEST_POSTGRES_URL) on a
temporary database that is dropped afterwards. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backdrop.pacing.database import DatabaseLimiter  # noqa: E402
from backdrop.pacing.memory import RateLimiter, SlidingWindowLimiter  # noqa: E402

#: Never waits below 25,000/s, yet each acquisition looks up a 250th-latest slot like the vendor's
#: (250, 300 s) window does.
GENEROUS = [(250, 0.01)]
WARMUP = 20


async def _timed(limiter: RateLimiter, n: int) -> tuple[list[float], float]:
    """Latencies of `n` acquisitions, each settled at once as the client settles it on the answer, after a
    warm-up; and the wall time they took."""
    for _ in range(WARMUP):
        await limiter.settle(await limiter.acquire())
    out: list[float] = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await limiter.settle(await limiter.acquire())
        out.append(time.perf_counter() - t)
    return out, time.perf_counter() - start


def _summary(latencies: list[float], wall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "per_second": round(len(latencies) / wall),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


def one_process(limiter: RateLimiter, n: int) -> dict[str, float]:
    return _summary(*asyncio.run(_timed(limiter, n)))


def many_processes(url: str, processes: int, n: int) -> dict[str, float]:
    key = f"bench-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, __file__, "--worker", url, key, str(n)]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    t = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    latencies: list[float] = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        latencies.extend(json.loads(out))
    return _summary(latencies, time.perf_counter() - t)


def worker(url: str, key: str, n: int) -> None:
    limiter = DatabaseLimiter(url, key, GENEROUS)
    limiter.take_slot()  # engine and table ready before the start
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(_timed(limiter, n))[0]), flush=True)


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{tmp}/limiter.db"


@contextmanager
def postgres_url(base: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"backdrop_bench_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        import importlib

        slots_db = importlib.import_module("backdrop.pacing.slots")
        for key in [k for k in slots_db.engines if name in k]:
            slots_db.engines.pop(key).dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench(url: str, n: int, processes: int) -> dict[str, Any]:
    single = one_process(DatabaseLimiter(url, f"bench-{uuid.uuid4().hex[:8]}", GENEROUS), n)
    result: dict[str, Any] = {"one_process": single}
    if processes > 1:
        result[f"{processes}_processes"] = many_processes(url, processes, n)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="acquisitions per process")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--postgres", default=os.environ.get("BACKDROP_TEST_POSTGRES_URL"))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return

    in_process = one_process(SlidingWindowLimiter(GENEROUS), args.n)
    results: dict[str, Any] = {"n": args.n, "in_process": in_process}
    with sqlite_url() as url:
        results["sqlite"] = bench(url, args.n, args.processes)
    if args.postgres:
        with postgres_url(args.postgres) as url:
            results["postgres"] = bench(url, args.n, args.processes)
    base = results["in_process"]["p50_ms"]
    print(f"{'limiter':<24}{'acq/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'added p50 ms':>14}")
    for name, value in results.items():
        rows = {"": value} if name == "in_process" else value if isinstance(value, dict) else {}
        for sub, row in rows.items():
            if not isinstance(row, dict) or "p50_ms" not in row:
                continue
            label = f"{name} {sub}".strip()
            added = row["p50_ms"] - base
            print(f"{label:<24}{row['per_second']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}"
                  f"{added:>14.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
