"""The vendor API driven by hand over plain httpx: upload slots, storage PUTs, task create and poll.

Used by the sandbox's own tests and the contract tests, which check the sandbox's answers request by
request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.sandbox import TLS

__all__ = ["Upload", "create", "poll", "poll_until_done", "put_bytes", "request_slot", "storage"]

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
