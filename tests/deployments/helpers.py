"""Real Prefect processes for the deployment tests: the CLI, a server and a worker, as subprocesses.

Nothing here touches this process's environment: every subprocess gets an explicit environment built
from a copy of `os.environ` without Prefect, Backdrop or proxy variables, plus what the test passes.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support import processes
from tests.support.processes import Background, free_port, stop, tail

ROOT = Path(__file__).resolve().parents[2]
_PROXY_VARS = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


def prefect_command() -> list[str]:
    """The `prefect` script beside this interpreter (the project's venv), else `-m prefect`."""
    script = Path(sys.executable).parent / "prefect"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "prefect"]


def subprocess_env(prefect_home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for one Prefect subprocess: a throwaway PREFECT_HOME, no analytics."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "BACKDROP_")) and k.upper() not in _PROXY_VARS}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONUNBUFFERED="1", COLUMNS="200", **extra)
    return env


def start_background(name: str, args: list[str], env: Mapping[str, str], log: Path,
                     cwd: Path = ROOT) -> Background:
    """`prefect <args>` in the background (see tests.support.processes)."""
    return processes.start_background(name, [*prefect_command(), *args], env, log, cwd)


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path = ROOT,
            timeout: float = 120.0) -> str:
    """Run one `prefect ...` command to completion; fail with its output if it exits non-zero."""
    proc = subprocess.run([*prefect_command(), *args], env=dict(env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    command = " ".join(args)
    assert proc.returncode == 0, f"prefect {command} exited {proc.returncode}:\n{output[-4000:]}"
    return output


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    process: Background


BUSY = 503  # Prefect's server on SQLite answers this when its database is locked; nothing was written


class RetryBusy(httpx.BaseTransport):
    """Sends a request again when the server answers 503, as Prefect's own client does (429, 502 and 503, with
    exponential back-off): the server rolled the request back, so a create is not made twice. The UI's Run
    button would show the error and the user would press it again; a test must not fail on that."""

    def __init__(self, delays: tuple[float, ...], inner: httpx.BaseTransport | None = None) -> None:
        self.delays, self.inner = delays, inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for delay in self.delays:
            response = self.inner.handle_request(request)
            if response.status_code != BUSY:
                return response
            response.read()
            response.close()
            time.sleep(delay)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def prefect_api(server: PrefectServer, delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)) -> httpx.Client:
    """A client of the server's REST API that outlasts a busy SQLite database (see `RetryBusy`)."""
    return httpx.Client(base_url=server.api_url, trust_env=False, timeout=30.0, transport=RetryBusy(delays))


def _wait_healthy(bg: Background, api_url: str, deadline_s: float) -> bool:
    """True once /api/health answers; False if the process exits first. Fails on the deadline."""
    deadline = time.monotonic() + deadline_s
    with httpx.Client(trust_env=False, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if bg.proc.poll() is not None:
                return False
            try:
                if http.get(f"{api_url}/health").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    raise AssertionError(f"Prefect server not healthy after {deadline_s:.0f} s\n{bg.tail()}")


@contextmanager
def prefect_server(home: Path, logs: Path, deadline_s: float = 120.0,
                   database_url: str | None = None, ui: bool = False) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1:<free port>, stopped on exit whatever happened.

    `database_url` (postgresql+asyncpg://...) puts the server on PostgreSQL instead of SQLite in `home`;
    `ui` serves the web UI too (at the server's root; the tests need only the API).
    """
    extra = {"PREFECT_API_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    for attempt in range(3):  # the free port may be taken between our probe and the server's bind
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        # the UI asks its server where the API is; `--port` alone leaves that answer at the default port
        env = subprocess_env(home, **extra, **({"PREFECT_UI_API_URL": api_url} if ui else {}))
        args = ["server", "start", "--host", "127.0.0.1", "--port", str(port), *([] if ui else ["--no-ui"])]
        bg = start_background("prefect server", args, env, logs / f"server-{attempt}.log")
        try:
            healthy = _wait_healthy(bg, api_url, deadline_s)
        except BaseException:
            stop(bg)
            raise
        if healthy:
            break
        if "already in use" not in tail(bg.log):
            raise AssertionError(f"Prefect server exited before it was healthy\n{bg.tail()}")
    else:
        raise AssertionError(f"no free port for the Prefect server after 3 attempts\n{bg.tail()}")
    try:
        yield PrefectServer(api_url, home, bg)
    finally:
        stop(bg)


@contextmanager
def prefect_worker(server: PrefectServer, pool: str, env: Mapping[str, str], log: Path,
                   name: str = "backdrop-e2e", limit: int | None = None,
                   home: Path | None = None) -> Iterator[Background]:
    """`prefect worker start --pool <pool>` against `server`, with `env` added; stopped on exit.

    `limit` caps the flow runs this worker runs at once (`--limit`), so that several workers share runs;
    `home` gives the worker a PREFECT_HOME of its own (another host's), default the server's.
    """
    full = subprocess_env(home or server.home, PREFECT_API_URL=server.api_url, **env)
    args = ["worker", "start", "--pool", pool, "--name", name]
    if limit is not None:
        args += ["--limit", str(limit)]
    bg = start_background("prefect worker", args, full, log)
    try:
        yield bg
    finally:
        stop(bg)


def deploy_all(srv: PrefectServer, pool: str) -> str:
    """Create the process work pool and deploy every deployment of prefect.yaml; returns the CLI's output."""
    env = subprocess_env(srv.home, PREFECT_API_URL=srv.api_url)
    run_cli(["work-pool", "create", pool, "--type", "process"], env)
    return run_cli(["--no-prompt", "deploy", "--all", "--prefect-file", str(ROOT / "prefect.yaml")], env)


@contextmanager
def deployed_server(tmp_path_factory: pytest.TempPathFactory, folder: str, pool: str,
                    database_url: str | None = None) -> Iterator[tuple[PrefectServer, str]]:
    """A server in a fresh `folder` (its home and logs) with `pool` and every deployment of prefect.yaml on
    it; yields the server and the deploy's output."""
    base = tmp_path_factory.mktemp(folder)
    (base / "logs").mkdir()
    with prefect_server(base / "prefect-home", base / "logs", database_url=database_url) as srv:
        yield srv, deploy_all(srv, pool)


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_final(api: httpx.Client, run_id: str, deadline_s: float,
               diagnose: Callable[[], str]) -> dict[str, Any]:
    deadline, seen = time.monotonic() + deadline_s, "never read"
    while time.monotonic() < deadline:
        try:
            resp = api.get(f"/flow_runs/{run_id}")
        except httpx.TransportError as exc:  # a busy SQLite server may drop a poll; next one counts
            seen = repr(exc)
        else:
            if resp.status_code < 500:
                run: dict[str, Any] = resp.raise_for_status().json()
                if run["state_type"] in FINAL:
                    return run
                seen = f"{run['state_type']}/{run['state_name']}"
        time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} not final after {deadline_s:.0f} s ({seen})\n"
                         f"{diagnose()}")


def read_events(api: httpx.Client, name: str, resource_id: str) -> list[dict[str, Any]]:
    """Events named `name` about `resource_id` from the last hour, as the server's event API (and an automation)
    sees them."""
    now = datetime.now(UTC)
    occurred = {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(minutes=5)).isoformat()}
    body = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource_id]}, "occurred": occurred},
            "limit": 50}
    events: list[dict[str, Any]] = api.post("/events/filter", json=body).raise_for_status().json()["events"]
    return events


_EMBEDDED = re.compile(r"!\[([^\]]*)\]\(data:image/(\w+);base64,([A-Za-z0-9+/=]+)\)")


@dataclass
class Embedded:
    """A picture embedded in markdown as a `data:` URI, decoded."""

    alt: str
    mime: str
    fmt: str  # what Pillow read in the bytes
    size: tuple[int, int]
    nbytes: int
    centre: tuple[int, ...]  # the RGB of the middle pixel


def embedded_pictures(markdown: str) -> list[Embedded]:
    """Every `![alt](data:image/...;base64,...)` in `markdown`, decoded with Pillow (fails if one is not a picture)."""
    found = []
    for alt, mime, data in _EMBEDDED.findall(markdown):
        raw = base64.b64decode(data, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            rgb = im.convert("RGB")
            centre = rgb.getpixel((rgb.width // 2, rgb.height // 2))
            assert isinstance(centre, tuple)
            found.append(Embedded(alt, f"image/{mime}", str(im.format), rgb.size, len(raw), centre))
    return found


def run_logs(api: httpx.Client, run_id: str) -> str:
    resp = api.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}},
                                          "sort": "TIMESTAMP_ASC"})
    return "\n".join(f"{r['level']:>2} {r['message']}" for r in resp.raise_for_status().json())
