"""Headless Chromium driven through the DevTools protocol: open a page, wait for what it must show, screenshot it.

`tests/support/chromium.py` renders a local file for a fixed virtual-time budget, which suits a static page. A
single-page app such as the Prefect UI fetches its data after load, so `Browser` waits for the page's own
content instead: texts that must be in the page, no loading indicator, every image decoded, then no change
between two captures; then a PNG of the viewport. It speaks the protocol over the page target's websocket (the
`websockets` package that Prefect already installs), so no browser automation library is needed. Used by
`scripts/make_ui_screenshots.py`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.support.chromium import FLAGS, ChromiumError, chromium_path

__all__ = ["Browser", "browser"]

# True once the page has rendered: every text in `texts` is in it, no element says it is loading, and every
# <img> with a source is decoded (a data: URI picture included).
_READY = """(() => {
  const texts = %s;
  const body = document.body ? document.body.innerText : "";
  if (!texts.every(t => body.includes(t))) return false;
  if (document.querySelector('[aria-busy="true"], .p-loading-icon, .animate-spin')) return false;
  return [...document.images].filter(i => i.src).every(i => i.complete && i.naturalWidth > 0);
})()"""


class Browser:
    """One page of a running headless Chromium, at a fixed viewport size."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one protocol command and return its result (events that arrive meanwhile are dropped)."""
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == ident:
                if "error" in message:
                    raise ChromiumError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def resize(self, width: int, height: int) -> None:
        """Set the viewport (CSS pixels, scale 1): what a screenshot shows."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, texts: Sequence[str], *, timeout: float = 90.0, still: float = 30.0) -> None:
        """Go to `url`; wait until the page shows every one of `texts` and has finished loading, then until it
        stops changing (at most `still` s: a canvas such as a run graph is drawn after its data arrives)."""
        self.call("Page.navigate", url=url)
        check = _READY % json.dumps(list(texts))
        deadline = time.monotonic() + timeout
        while not self.evaluate(check):
            if time.monotonic() > deadline:
                shown = str(self.evaluate("document.body ? document.body.innerText : ''"))[:1500]
                raise ChromiumError(f"{url} did not show {list(texts)} within {timeout:.0f} s; it shows:\n{shown}")
            time.sleep(0.5)
        self._wait_still(still)

    def _wait_still(self, timeout: float, interval: float = 1.5) -> None:
        """Until two captures `interval` s apart are the same pixels, or `timeout` s have passed."""
        deadline = time.monotonic() + timeout
        last = self.call("Page.captureScreenshot", format="png")["data"]
        while time.monotonic() < deadline:
            time.sleep(interval)
            now = self.call("Page.captureScreenshot", format="png")["data"]
            if now == last:
                return
            last = now

    def screenshot(self, png: Path) -> Path:
        """The viewport as a PNG file."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(data))
        return png


def _flags() -> list[str]:
    """chromium.py's flags, but loopback addresses resolve: the pages are served by a local server."""
    return ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"
            if flag.startswith("--host-resolver-rules=") else flag for flag in FLAGS]


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], deadline_s: float) -> int:
    """The port Chromium chose for DevTools (it writes it to DevToolsActivePort in its profile)."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChromiumError(f"Chromium exited with {proc.returncode} before DevTools was up")
        if marker.is_file() and (first := marker.read_text().split("\n", 1)[0].strip()):
            return int(first)
        time.sleep(0.1)
    raise ChromiumError(f"Chromium opened no DevTools port within {deadline_s:.0f} s")


@contextmanager
def browser(width: int = 1440, height: int = 1000) -> Iterator[Browser]:
    """A headless Chromium with one blank page of `width` x `height` CSS pixels; ended with all its processes."""
    binary = chromium_path()
    if binary is None:
        raise ChromiumError("Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="backdrop-devtools-") as tmp:
        profile = Path(tmp)
        cmd = [binary, *_flags(), f"--user-data-dir={profile}", f"--window-size={width},{height}",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            port = _devtools_port(profile, proc, 60.0)
            with httpx.Client(trust_env=False, timeout=10.0) as http:
                targets = http.get(f"http://127.0.0.1:{port}/json/list").raise_for_status().json()
            page = next(t for t in targets if t.get("type") == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=30) as ws:
                tab = Browser(ws)
                tab.call("Page.enable")
                tab.resize(width, height)
                yield tab
        finally:
            _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM Chromium's process group (its helpers too), SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait(timeout=10)
