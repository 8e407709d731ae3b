"""Render a gallery in headless Chromium: a screenshot, or the DOM after the page's `load` event.

Used by the browser test and by `scripts/make_readme_images.py`; the pipeline never needs it.
Chromium is told to resolve no host name and to skip every background service, so rendering a
local page sends nothing anywhere. `FLAGS` are shared with `tests/support/devtools.py` (which
lets loopback addresses resolve, for a page served by a local server such as the Prefect UI).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

__all__ = ["FLAGS", "ChromiumError", "chromium_path", "dump_dom", "screenshot"]

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--disable-dev-shm-usage",
    "--hide-scrollbars", "--mute-audio", "--no-default-browser-check",
    "--force-device-scale-factor=1", "--host-resolver-rules=MAP * ~NOTFOUND",
]


class ChromiumError(RuntimeError):
    """Chromium is missing, failed, or did not finish in time."""


def chromium_path() -> str | None:
    """The Chromium binary (`/usr/bin/chromium` from the Debian package), or None."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _run(page: Path, extra: list[str], timeout: float, fragment: str = "") -> str:
    binary = chromium_path()
    if binary is None:
        raise ChromiumError("Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="backdrop-chromium-") as profile:
        url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url]
        # Its own session, so a hang can be ended with all of Chromium's helper processes.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ChromiumError(f"Chromium did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise ChromiumError(f"Chromium exited with {proc.returncode}: {err.strip()[-2000:]}")
    return out


def dump_dom(
    page: Path, *, fragment: str = "", budget_ms: int = 5000, timeout: float = 90.0
) -> str:
    """The page's DOM once its `load` event has run (virtual time lets it finish first).

    `fragment` is appended to the URL after `#` (the gallery reads it as its starting filter).
    """
    flags = [f"--virtual-time-budget={budget_ms}", "--window-size=1280,2000", "--dump-dom"]
    return _run(page, flags, timeout, fragment)


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 2000,
               budget_ms: int = 5000, timeout: float = 90.0) -> Path:
    """A PNG of the page's first `width` x `height` pixels."""
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(page, [f"--virtual-time-budget={budget_ms}", f"--window-size={width},{height}",
                f"--screenshot={png.resolve()}"], timeout)
    if not png.is_file():
        raise ChromiumError(f"Chromium wrote no screenshot to {png}")
    return png
