"""Stopping by pid: `backdrop sandbox`, and a command that started a sandbox, free the port on SIGTERM or SIGINT.

A supervisor (systemd, a CI script, `kill <pid>`) stops a process with SIGTERM. `backdrop sandbox` becomes the
server itself, so the signal reaches the server; `backdrop run --sandbox` and `backdrop demo` unwind as on Ctrl-C,
which stops the sandbox they started. Each test checks the port is free afterwards, not just that the pid exited.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port
from tests.support.sandbox import TLS
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
BACKDROP = str(Path(sys.executable).with_name("backdrop"))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BACKDROP_")}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/_sandbox/health", trust_env=False, verify=TLS, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_backdrop_sandbox_stops_on_a_signal_sent_to_its_pid(sig: signal.Signals) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen([BACKDROP, "sandbox", "--port", str(port)], cwd=ROOT, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            wait_until(lambda: _answers(url) or proc.poll() is not None, timeout=60)
            assert proc.poll() is None and _answers(url)
            proc.send_signal(sig)  # the pid the user started: no process group, no children found by hand
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not _answers(url)
    wait_until(lambda: _port_free(port), timeout=10, message=f"port {port} still taken after {sig.name}")


# The launcher of `run --sandbox` and `demo`: main()'s signal handling around `sandbox_process`, nothing else.
LAUNCHER = """
import sys, time
from backdrop import cli
from backdrop.cli.sandbox import sandbox_process

def hold() -> None:
    with sandbox_process(20.0) as url:
        print(url, flush=True)
        time.sleep(600)

cli.app.command(hold)
sys.argv = ["backdrop", "hold"]
cli.main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_command_that_started_a_sandbox_stops_it_when_signalled(sig: signal.Signals) -> None:
    with subprocess.Popen([sys.executable, "-c", LAUNCHER], cwd=ROOT, env=_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), "the launcher did not start its sandbox"
            assert _answers(url)
            started = time.monotonic()
            proc.send_signal(sig)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    port = int(url.rsplit(":", 1)[1])
    assert not _answers(url)
    wait_until(lambda: _port_free(port), timeout=10, message=f"the sandbox outlived its launcher ({sig.name})")
    assert time.monotonic() - started < 30
