"""The vendor API driven by hand over plain httpx: upload slots, storage PUTs, task create and poll.

Used by the sandbox's own tests and the contract tests, which check the sandbox's answers request by
request; `LoopbackHTTP` is the loopback server that serves `src_file_url` pictures and receives webhooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.sandbox import TLS

__all__ = ["LoopbackHTTP", "Upload", "create", "poll", "poll_until_done", "put_bytes", "request_slot", "storage"]

#: the sandbox tests' `upload` fixture: upload(data=None, name="photo.jpg", content_type="image/jpeg") -> file_id
Upload = Callable[..., str]

#: for the storage URLs, which need no key; shared so each call does not build a TLS context
storage = httpx.Client(trust_env=False, timeout=10.0, verify=TLS)


def request_slot(api: httpx.Client, data: bytes, name: str = "photo.jpg",
                 content_type: str = "image/jpeg", route: str = "/s2s/v2.0/file") -> dict[str, Any]:
    resp = api.post(route, json={"files": [
        {"content_type": content_type, "file_name": name, "file_size": len(data)}]})
    assert resp.status_code == 200, resp.text
    slot: dict[str, Any] = resp.json()["data"]["files"][0]
    return slot


def put_bytes(slot: dict[str, Any], data: bytes, **headers: str) -> httpx.Response:
    req = slot["requests"][0]
    return storage.put(req["url"], content=data, headers={**req["headers"], **headers})


def create(api: httpx.Client, slug: str = "bg-replace", **body: Any) -> str:
    resp = api.post(f"/s2s/v2.0/task/{slug}", json=body)
    assert resp.status_code == 200, resp.text
    task_id: str = resp.json()["data"]["task_id"]
    return task_id


def poll(api: httpx.Client, task_id: str, slug: str = "bg-replace") -> httpx.Response:
    return api.get(f"/s2s/v2.0/task/{slug}/{task_id}")


def poll_until_done(api: httpx.Client, task_id: str, slug: str = "bg-replace",
                    limit_s: float = 20.0) -> dict[str, Any]:
    """Poll every 10 ms until a terminal state; the limit only stops a broken test hanging."""
    end = time.monotonic() + limit_s
    while True:
        resp = poll(api, task_id, slug)
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()["data"]
        if data["task_status"] != "running" or time.monotonic() > end:
            return data
        time.sleep(0.01)


class LoopbackHTTP:
    """A tiny HTTP server on 127.0.0.1:<free>: serves `routes` on GET, records every POST.

    `routes` maps a path to (status, body); `post_statuses` is a queue of statuses for POSTs
    (200 once it runs out).
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.routes: dict[str, tuple[int, bytes]] = {}
        self.posts: list[dict[str, Any]] = []
        self.post_statuses: list[int] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
                status, body = outer.routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
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
