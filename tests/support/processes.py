"""Subprocesses the tests and benches start: a free port, start in a process group, stop with all children.

`start_background` runs a long-lived command with its output in a log file; `stop` ends it, its group and
every process it started (found through /proc, each checked by pid and start time so a recycled pid is never
signalled), killing what outlives the grace period; `terminate` does the same for a plain `Popen` child.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Background", "free_port", "start_background", "stop", "tail", "terminate"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another process may still take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, chars: int = 3000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-chars:]


@dataclass
class Background:
    """A long-running subprocess in its own process group, its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} (exit code {self.proc.poll()}) ---\n{tail(self.log, chars)}"


def start_background(name: str, command: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> Background:
    """Start `command` in a new session (its own process group), stdout and stderr into `log`."""
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(command, env=dict(env), cwd=cwd,
                                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return Background(name, proc, log)


def _identity(pid: int) -> tuple[int, int] | None:
    """(pid, start time) from /proc, so a recycled pid is never mistaken for our process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (pid, int(fields[19]))


def _descendants(pid: int) -> list[tuple[int, int]]:
    """All live processes below `pid` (via /proc); a flow-run process may have its own session."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            todo.append(child)
            if (ident := _identity(child)) is not None:
                found.append(ident)
    return found


def stop(bg: Background, grace: float = 15.0) -> None:
    """Terminate the process, its group and all it started; kill what outlives the grace period."""
    if bg.proc.poll() is not None:
        return
    children = _descendants(bg.proc.pid) if Path("/proc").is_dir() else []
    _signal(bg, children, signal.SIGTERM)
    try:
        bg.proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_identity(p) == (p, t) for p, t in children):
        time.sleep(0.1)
    _signal(bg, children, signal.SIGKILL)
    bg.proc.wait(timeout=10)


def _signal(bg: Background, children: list[tuple[int, int]], sig: signal.Signals) -> None:
    """Signal our group while its leader is unreaped, and each child still the one we saw."""
    targets: list[tuple[Callable[[int, int], None], int]] = []
    if bg.proc.poll() is None:
        targets.append((os.killpg, bg.proc.pid))
    targets += [(os.kill, pid) for pid, started in children if _identity(pid) == (pid, started)]
    for send, target in targets:
        try:
            send(target, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float, *, kill: bool = True) -> None:
    """SIGTERM a plain child and wait `grace` s for it; then SIGKILL it (or, with kill=False, let the
    TimeoutExpired propagate)."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        if not kill:
            raise
        proc.kill()
