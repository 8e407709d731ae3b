"""Prefect's temporary server gets 180 s to start from Backdrop's entry points, unless the user chose a value.

Each test runs an entry point in a fresh process with a fresh PREFECT_HOME and no PREFECT_API_URL, and
replaces the server's start by a probe that prints the budget Prefect sees at that moment, in the
process that starts the server, then fails the way a start that ran out of time fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backdrop.cli.startup import STARTUP_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]
DEMO_CSV = ROOT / "backdrop" / "demo" / "products.csv"

PROBE = """
def _probe(self, timeout=None):
    from prefect.settings import get_current_settings
    print("BUDGET", get_current_settings().server.ephemeral.startup_timeout_seconds, timeout, flush=True)
    if _REAL_START is not None:
        return _REAL_START(self, timeout)
    raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

def _install_probe():
    global _REAL_START
    from prefect.server.api.server import SubprocessASGIServer
    _REAL_START = SubprocessASGIServer.start if REAL else None
    SubprocessASGIServer.start = _probe
"""

# The CLI as `backdrop ...` runs it: Prefect is first imported by the CLI itself, so the probe goes in
# right after Backdrop sets the budget (and before the flow asks for a client).
CLI = PROBE + """
import sys
from backdrop import cli
from backdrop.cli import startup as prefect_startup
_set_budget = prefect_startup.generous_startup_timeout
def _budget_then_probe():
    budget = _set_budget()
    _install_probe()
    return budget
prefect_startup.generous_startup_timeout = _budget_then_probe
sys.argv = ["backdrop", *sys.argv[1:]]
cli.main()
"""

# deployments/serve.py imports Prefect before anything else: its settings are read by then.
SERVE = PROBE + """
import runpy
_install_probe()
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def _run(script: str, *args: str, home: Path, env: dict[str, str] | None = None,
         real: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in (STARTUP_TIMEOUT, "PREFECT_API_URL", "PREFECT_PROFILE") and not k.startswith("BACKDROP_")}
    clean.update(PREFECT_HOME=str(home / "prefect"), BACKDROP_HOME=str(home / "backdrop"), PYTHONPATH=str(ROOT),
                 **(env or {}))
    code = f"import sys\nREAL = {real}\n{script}"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=home, env=clean, capture_output=True,
                          text=True, timeout=timeout)


def _budget(proc: subprocess.CompletedProcess[str]) -> int:
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("BUDGET ")]
    assert lines, (proc.stdout, proc.stderr)
    return int(lines[0][1])


def _dry_run(tmp_path: Path) -> list[str]:
    return ["run", str(DEMO_CSV), "--out", str(tmp_path / "out"), "--dry-run"]


#: a run without any key stops before Prefect starts; this one is never sent (the server's start fails first)
KEYED = {"BACKDROP_API_KEY": "never-used"}


def test_cli_gives_the_server_180_s_and_fails_in_one_line(tmp_path: Path) -> None:
    proc = _run(CLI, *_dry_run(tmp_path), home=tmp_path, env=KEYED)
    assert _budget(proc) == 180
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert "did not start within 180 s" in errors[0] and STARTUP_TIMEOUT in errors[0]


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    proc = _run(CLI, *_dry_run(tmp_path), "--verbose", home=tmp_path, env=KEYED)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "did not start within 180 s" in proc.stderr


def test_the_users_value_is_kept_from_the_environment(tmp_path: Path) -> None:
    proc = _run(CLI, *_dry_run(tmp_path), home=tmp_path, env={STARTUP_TIMEOUT: "45", **KEYED})
    assert _budget(proc) == 45
    assert "did not start within 45 s" in proc.stderr


def test_the_users_value_is_kept_from_a_prefect_profile(tmp_path: Path) -> None:
    (tmp_path / "prefect").mkdir()
    (tmp_path / "prefect" / "profiles.toml").write_text(
        'active = "slow-laptop"\n\n[profiles.slow-laptop]\nPREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "true"\n'
        f'{STARTUP_TIMEOUT} = "300"\n')
    proc = _run(CLI, "cost", "--out", str(tmp_path / "cost"), home=tmp_path)
    assert _budget(proc) == 300


def test_serve_gives_the_server_180_s(tmp_path: Path) -> None:
    proc = _run(SERVE, str(ROOT / "deployments" / "serve.py"), home=tmp_path)
    assert _budget(proc) == 180, proc.stderr


def test_a_real_first_start_uses_the_budget_and_the_demo_batch_passes(tmp_path: Path) -> None:
    """A real temporary server on a fresh PREFECT_HOME (its database built first), a dry run on the sandbox."""
    proc = _run(CLI, *_dry_run(tmp_path), "--sandbox", home=tmp_path, real=True)
    assert _budget(proc) == 180
    assert proc.returncode == 0, proc.stderr[-3000:]
