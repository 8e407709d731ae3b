"""Serve the sandbox with uvicorn: in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn
from pydantic import SecretStr

from .app import create_app
from .netguard import is_loopback_host
from .profiles import with_profile
from .routes_admin import ADMIN_HEADER
from .settings import SandboxSettings


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. Without it, uvicorn's separate writes of head and body
    # meet Nagle + delayed ACK and every answer on a pre-bound socket waits ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class RemoteBindRefused(ValueError):
    """A non-loopback bind address without the explicit allow_remote flag."""


def guard_bind(host: str, settings: SandboxSettings, *, allow_remote: bool) -> tuple[SandboxSettings, str | None]:
    """The settings to serve `host` with, and the admin token generated for it (None if none was made).

    Loopback needs nothing. Any other address lets strangers use every key's state and make the engine fetch
    URLs: refused unless `allow_remote`, and then every /_sandbox/ route needs an admin token (the setting's,
    else a random one, returned here to be shown once).
    """
    if is_loopback_host(host):
        return settings, None
    if not allow_remote:
        raise RemoteBindRefused(
            f"{host} is not a loopback address: anyone who reaches it could read and reset every key's state "
            "and make the sandbox fetch URLs; bind 127.0.0.1, or pass --allow-remote (an admin token then guards "
            "/_sandbox/)")
    if settings.admin_token is not None:
        return settings, None
    token = secrets.token_urlsafe(24)
    return settings.model_copy(update={"admin_token": SecretStr(token)}), token


def _server(settings: SandboxSettings) -> uvicorn.Server:
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=3)
    return uvicorn.Server(config)


class SandboxServer:
    """A sandbox on a real socket, served by uvicorn in a daemon thread.

    Binds before starting (port 0 = a free port), and returns from `start()` only once
    `/_sandbox/health` answers. `profile` names a vendor-variant profile (profiles.py).
    """

    def __init__(self, settings: SandboxSettings | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, profile: str | None = None, allow_remote: bool = False) -> None:
        self.settings, self.admin_token = guard_bind(host, with_profile(profile, settings),
                                                     allow_remote=allow_remote)
        if self.settings.admin_token is not None:
            self.admin_token = self.settings.admin_token.get_secret_value()
        self.host = host
        self._port = port
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._sock.getsockname()[1])

    @property
    def base_url(self) -> str:
        return _url(self.host, self.port)

    def start(self, timeout_s: float = 15.0) -> SandboxServer:
        self._sock = _bind(self.host, self._port)
        self._server = _server(self.settings)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="backdrop-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        headers = {ADMIN_HEADER: self.admin_token} if self.admin_token else {}
        with httpx.Client(trust_env=False, timeout=1.0, headers=headers) as client:
            while True:
                try:
                    if client.get(f"{self.base_url}/_sandbox/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"sandbox did not start on {self.host}:{self._port}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start() if self._thread is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 8765, settings: SandboxSettings | None = None,
          *, ready_file: str | os.PathLike[str] | None = None, profile: str | None = None,
          allow_remote: bool = False) -> None:
    """Serve in the foreground until SIGINT/SIGTERM; print the URL (and write it) once ready.

    A non-loopback `host` needs `allow_remote` (RemoteBindRefused otherwise) and gets an admin token.
    """
    settings, generated = guard_bind(host, with_profile(profile, settings), allow_remote=allow_remote)
    sock = _bind(host, port)
    url = _url(host, int(sock.getsockname()[1]))
    server = _server(settings)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if not server.started:
            return
        key = settings.api_keys[0] if settings.api_keys else "sandbox-<anything>"
        print(f"Backdrop sandbox: {url}  (API key: {key})", flush=True)
        if not is_loopback_host(host):
            shown = generated or "the one in BACKDROP_SANDBOX_ADMIN_TOKEN"
            print(f"Reachable beyond this machine: every /_sandbox/ route needs the header X-Sandbox-Admin-Token: "
                  f"{shown}", flush=True)
        if ready_file is not None:
            target = Path(ready_file)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(url + "\n")
            tmp.replace(target)

    threading.Thread(target=announce, name="sandbox-announce", daemon=True).start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the
    # previous handlers; make those harmless so a stop is a clean exit (status 0).
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        sys.exit(1)
