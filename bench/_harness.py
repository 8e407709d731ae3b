"""Shared plumbing for the benches: a sandbox and a Prefect server as subprocesses, pictures, batch runs.

Everything listens on 127.0.0.1 only and is stopped when the bench ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benches run as scripts from bench/

from tests.support.images import random_products as draw_pictures
from tests.support.processes import free_port, terminate
from tests.support.waiting import wait_until as _wait_until

__all__ = ["PrefectServer", "admin", "configure", "draw_pictures", "finish_batch", "free_port", "prefect_server",
           "run_batch", "sandbox", "scaled_env", "start_batch", "start_load", "stop_load", "tree_cpu_seconds",
           "wait_until", "write_csv"]

BIN = Path(sys.executable).parent
RUNNER = Path(__file__).with_name("_run_batch.py")


def wait_until(check: Any, timeout: float, what: str) -> None:
    """Wait for `check()` to be truthy (exceptions count as not yet); RuntimeError naming `what` if it never is."""
    if not _wait_until(check, timeout, interval=0.1, ignore=(Exception,)):
        raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")


@contextlib.contextmanager
def sandbox(time_scale: float, *, webhook_secret: str | None = None) -> Iterator[str]:
    """`python -m backdrop.sandbox` on a free port; yields its base URL."""
    env = dict(os.environ)
    env["BACKDROP_SANDBOX_ALLOW_PRIVATE_FETCH"] = "true"  # url mode and webhooks reach the bench's loopback servers
    if webhook_secret:
        env["BACKDROP_SANDBOX_WEBHOOK_SECRET"] = webhook_secret
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "url"
        proc = subprocess.Popen([sys.executable, "-m", "backdrop.sandbox", "--port", "0", "--time-scale",
                                 str(time_scale), "--ready-file", str(ready)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: ready.read_text().strip(), 30, "the sandbox")
            yield ready.read_text().strip()
        finally:
            terminate(proc, 15, kill=False)


def _die_with_parent() -> None:
    """In a child, before exec: on Linux, SIGKILL it when the bench dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def start_load(n: int) -> list[subprocess.Popen[bytes]]:
    """`n` busy processes (`python -c 'while 1: pass'`, a machine doing something else); on Linux each dies with
    the bench too. Stop them with `stop_load`, in a `finally`."""
    return [subprocess.Popen([sys.executable, "-c", "while 1: pass"], preexec_fn=_die_with_parent)
            for _ in range(n)]


def stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of process `pid` and every descendant alive now, plus the children each has
    reaped, from /proc (Linux); None elsewhere or when `pid` is gone."""
    if _proc_stat(pid) is None:
        return None
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = st
            children.setdefault(int(st[1]), []).append(int(entry.name))
    ticks, todo, total = os.sysconf("SC_CLK_TCK"), [pid], 0
    while todo:
        p = todo.pop()
        if p in stats:
            total += sum(int(v) for v in stats[p][11:15])  # utime, stime, cutime, cstime
        todo.extend(children.get(p, []))
    return total / ticks


@dataclass(frozen=True)
class PrefectServer:
    """A running `prefect server start`: its API URL and its process id (for its CPU time)."""

    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """CPU seconds of the server and its subprocesses so far."""
        return tree_cpu_seconds(self.pid)


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[PrefectServer]:
    """A real `prefect server start` (SQLite in `home`)."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                             str(port), "--no-ui"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 120, "Prefect")
        yield PrefectServer(url, proc.pid)
    finally:
        terminate(proc, 20)


def configure(base_url: str, key: str, **fields: Any) -> None:
    resp = httpx.patch(f"{base_url}/_sandbox/config", json=fields,
                       headers={"Authorization": f"Bearer {key}"}, timeout=10)
    resp.raise_for_status()


def admin(base_url: str, key: str, path: str) -> Any:
    resp = httpx.get(f"{base_url}/_sandbox/{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    resp.raise_for_status()
    return resp.json()


def write_csv(path: Path, images: list[str], prompt: str = "white marble, soft light") -> Path:
    lines = ["id,image_url,prompt"] + [f'r{i:05d},{img},"{prompt}"' for i, img in enumerate(images)]
    path.write_text("\n".join(lines) + "\n")
    return path


def scaled_env(api_url: str, key: str, time_scale: float, **extra: str) -> dict[str, str]:
    """Backdrop's settings for a sandbox running `time_scale` times faster than the vendor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKDROP_")}
    env.update(
        BACKDROP_API_URL=api_url, BACKDROP_API_KEY=key,
        # each sandbox key is an account of its own: one mode's cached creates are not another key's tasks
        BACKDROP_ACCOUNT=key,
        BACKDROP_RATE_LIMIT_WINDOW_SECONDS=str(300 / time_scale),
        BACKDROP_RATE_LIMIT_PER_SECOND=str(5 * time_scale),
        BACKDROP_RATE_LIMIT_SHORT_WINDOW_SECONDS=str(1 / time_scale),
        BACKDROP_POLL_FIRST_SECONDS=str(8 / time_scale), BACKDROP_POLL_INTERVAL_SECONDS=str(2 / time_scale),
        # every poll setting at its default, scaled (until 2026-11-30 the gap and the safety poll were not: the
        # benches polled with a 400 s gap in vendor time, and the limiter's room for polls had nothing to keep)
        BACKDROP_POLL_MAX_INTERVAL_SECONDS=str(15 / time_scale),
        BACKDROP_POLL_MAX_GAP_SECONDS=str(20 / time_scale),
        BACKDROP_WEBHOOK_SAFETY_POLL_SECONDS=str(60 / time_scale),
        BACKDROP_POLL_DEADLINE_SECONDS=str(900 / time_scale),
        BACKDROP_BACKOFF_BASE_SECONDS=str(1 / time_scale), BACKDROP_BACKOFF_MAX_SECONDS=str(30 / time_scale),
        # a create whose answer was lost (a busy machine) is settled in scaled time, not 15 real minutes later
        BACKDROP_RECONCILE_AFTER_SECONDS=str(900 / time_scale),
        BACKDROP_SETTLE_WAIT_SECONDS=str(1200 / time_scale),
        PREFECT_LOGGING_LEVEL="WARNING",
        # the bench's CSVs and outputs live in the temporary folder
        BACKDROP_INPUT_ROOTS=tempfile.gettempdir(), BACKDROP_OUTPUT_ROOTS=tempfile.gettempdir(),
    )
    env.update(extra)
    return env


def start_batch(csv: Path, out: Path, env: dict[str, str], *args: str,
                profile: Path | None = None) -> subprocess.Popen[str]:
    """Start `backdrop run` in a child process (see `finish_batch`). With `profile`, py-spy (if installed: it is
    not in the lock) samples it into that file, in its raw (collapsed stacks) format; `bench/_profile.py` groups
    them."""
    proc = subprocess.Popen([sys.executable, str(RUNNER), "run", str(csv), "--out", str(out),
                             "--json-output", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.backdrop_start = (csv, out, env, args, profile)  # type: ignore[attr-defined]  # for `finish_batch`'s retry
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if profile is not None and spy:
        # only the thread holding the GIL: the samples approximate Python's CPU time (bench/_profile.py);
        # --nonblocking never pauses the batch
        subprocess.Popen([spy, "record", "--pid", str(proc.pid), "--format", "raw", "--rate", "100", "--gil",
                          "--nonblocking", "--threads", "-o", str(profile)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif profile is not None:
        print("py-spy is not installed: no profile (pip install py-spy into the venv)", flush=True)
    return proc


class BatchFailed(RuntimeError):
    """A batch that gave no summary: its stderr's tail, and whatever figures it left (`partial`)."""

    def __init__(self, message: str, stderr_tail: str, partial: dict[str, Any]) -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.partial = partial


def _last_json(text: str) -> dict[str, Any]:
    lines = text.strip().splitlines()
    try:
        value = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _never_started(stderr: str, out: Path | None) -> bool:
    """The bench's Prefect server refused to create the batch's flow run (a 503 on POST /flow_runs/, seen on this
    2-core machine under load): nothing ran, nothing was written, so the batch may simply be started again."""
    refused = "create_flow_run" in stderr and "503 Service Unavailable" in stderr and "/flow_runs/" in stderr
    return refused and (out is None or not (out / "summary.json").exists())


def finish_batch(proc: subprocess.Popen[str], out: Path | None = None) -> dict[str, Any]:
    """Wait for a batch; returns its summary plus the child's CPU seconds and peak RSS. A batch that printed no
    summary raises BatchFailed with its stderr's tail and its partial figures (usage, the summary.json it wrote).
    A batch whose flow run the Prefect server refused to create (`_never_started`) is started once more, and says
    so on stderr."""
    stdout, stderr = proc.communicate()
    start = getattr(proc, "backdrop_start", None)
    if not _last_json(stdout) and start is not None and _never_started(stderr, out):
        print(f"the Prefect server refused to create the flow run of {start[0].name} (503): starting it again",
              file=sys.stderr, flush=True)
        time.sleep(5)
        csv, out_dir, env, args, profile = start
        proc = start_batch(csv, out_dir, env, *args, profile=profile)
        stdout, stderr = proc.communicate()
    usage = _last_json(stderr)  # the runner's last stderr line: CPU and RSS (absent if the child died)
    summary = _last_json(stdout)
    if not summary:
        partial = dict(usage)
        written = out / "summary.json" if out is not None else None
        if written is not None and written.is_file():
            with contextlib.suppress(ValueError):
                partial.update(json.loads(written.read_text()))
        tail = "\n".join(stderr.strip().splitlines()[-15:])[-2000:]
        raise BatchFailed(f"batch failed (exit {proc.returncode})", tail, partial)
    return {**summary, **usage, "exit_code": proc.returncode}


def run_batch(csv: Path, out: Path, env: dict[str, str], *args: str,
              profile: Path | None = None) -> dict[str, Any]:
    """Run `backdrop run` in a child process and wait for it."""
    return finish_batch(start_batch(csv, out, env, *args, profile=profile), out)
