"""The sandbox from the CLI: `backdrop sandbox` in the foreground, and the sandbox process `run --sandbox` starts.

`sandbox_env` points the pipeline at a started sandbox through the environment (`BACKDROP_*`), because the
flow and its tasks read their settings from there (`tasks.runtime.settings_for`) and the settings are not
a flow parameter (the API key never is).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

SANDBOX_KEY = "sandbox-key"


@contextmanager
def sandbox_process(time_scale: float) -> Iterator[str]:
    """Start the sandbox as its own process on a free loopback port; yield its base URL."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "url"
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, arguments as a list
            [sys.executable, "-m", "backdrop.sandbox", "--host", "127.0.0.1", "--port", "0",
             "--time-scale", str(time_scale), "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not (ready.exists() and ready.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read() if proc.stderr else ""
                    raise RuntimeError(f"the sandbox did not start: {err[-2000:]}")
                time.sleep(0.05)
            yield ready.read_text().strip()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def sandbox_env(url: str, time_scale: float) -> None:
    """Point the pipeline at the sandbox, with poll timings in the sandbox's (scaled) time."""
    os.environ["BACKDROP_API_URL"] = url
    os.environ["BACKDROP_API_KEY"] = SANDBOX_KEY
    os.environ.pop("BACKDROP_API_KEY_BLOCK", None)
    # Its results come from its own host (always allowed); pictures it serves come from its own address, which the
    # fetch fence refuses like any loopback address unless opened: open that one address, nothing more.
    host = urlsplit(url).hostname or "127.0.0.1"
    allowed = os.environ.get("BACKDROP_FETCH_ALLOW_NETWORKS", "")
    os.environ["BACKDROP_FETCH_ALLOW_NETWORKS"] = ",".join(filter(None, (allowed, host)))
    for name, vendor_seconds in (("POLL_FIRST_SECONDS", 8.0), ("POLL_INTERVAL_SECONDS", 2.0),
                                 ("POLL_MAX_INTERVAL_SECONDS", 30.0)):
        os.environ.setdefault(f"BACKDROP_{name}", str(vendor_seconds / time_scale))


def sandbox(*, host: str = "127.0.0.1", port: int = 8765, time_scale: float = 1.0, profile: str | None = None,
            allow_remote: bool = False) -> NoReturn:
    """Serve the sandbox (a local emulator of the API) in the foreground.

    Parameters
    ----------
    host
        Address to bind (keep it on loopback); any other address needs --allow-remote.
    port
        Port to listen on (0 picks a free one).
    time_scale
        How much faster than the vendor the sandbox runs (1 = real time).
    profile
        Vendor-variant profile: default, oldest-first, resized, png, short-window, shifted-clock or hostile
        (see backdrop/sandbox/README.md). Default: $BACKDROP_SANDBOX_PROFILE, else none.
    allow_remote
        Bind a non-loopback --host anyway: strangers could then reach it, so every /_sandbox/ route needs an
        admin token ($BACKDROP_SANDBOX_ADMIN_TOKEN, else a random one printed once at start).
    """
    # The launcher becomes the server (same pid): a SIGTERM or Ctrl-C sent to `backdrop sandbox` reaches it, and it
    # stops gracefully, freeing its port. A child process would outlive a launcher killed by its pid.
    args = [sys.executable, "-m", "backdrop.sandbox", "--host", host, "--port", str(port),
            "--time-scale", str(time_scale), *(["--profile", profile] if profile else []),
            *(["--allow-remote"] if allow_remote else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, args)  # noqa: S606 - our own interpreter and module, arguments as a list
