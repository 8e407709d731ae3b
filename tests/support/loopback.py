"""HTTP servers on 127.0.0.1:<free port> that tests stand up: a scripted one, or any handler class.

`LoopbackHTTP` serves `src_file_url` pictures and receives webhooks for the sandbox tests; `serve` runs any
`BaseHTTPRequestHandler` (a folder of files, redirects, errors) for as long as a `with` block, and closes
its listening socket after.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["LoopbackHTTP", "serve"]


@contextmanager
def serve(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threading HTTP server with `handler` on 127.0.0.1:<free port>; yields its base URL (no slash)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class LoopbackHTTP:
    """A tiny HTTP server on 127.0.0.1:<free>: serves `routes` on GET, records every POST.

    `routes` maps a path to (status, body); `post_statuses` is a queue of statuses for POSTs
    (200 once it runs out).
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.posts: list[dict[str, Any]] = []
        self.post_statuses: list[int] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = outer.routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append({"path": self.path, "headers": dict(self.headers.items()),
                                    "body": body})
                status = outer.post_statuses.pop(0) if outer.post_statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
