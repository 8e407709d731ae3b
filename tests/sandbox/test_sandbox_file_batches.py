"""File API batches: several files in one request get one slot each, every slot takes its own PUT, and the
`file_batch` setting refuses a batch (400) or answers fewer slots, as a vendor that takes one file might."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.images import picture
from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import create, put_bytes


def _ask(api: httpx.Client, pictures: list[bytes], route: str = "/s2s/v2.0/file") -> httpx.Response:
    return api.post(route, json={"files": [
        {"content_type": "image/jpeg", "file_name": f"p{i}.jpg", "file_size": len(data)}
        for i, data in enumerate(pictures)]})


@pytest.mark.parametrize("route", ["/s2s/v2.0/file", "/s2s/v2.0/file/bg-replace-v2"])
def test_a_batch_gets_one_slot_per_file_in_order_and_each_takes_its_own_put(api: httpx.Client,
                                                                            route: str) -> None:
    pictures = [picture(64 + i, 48) for i in range(4)]
    resp = _ask(api, pictures, route)
    assert resp.status_code == 200, resp.text
    slots: list[dict[str, Any]] = resp.json()["data"]["files"]
    assert [s["file_name"] for s in slots] == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert [s["requests"][0]["headers"]["Content-Length"] for s in slots] == [str(len(p)) for p in pictures]
    assert len({s["file_id"] for s in slots}) == len({s["requests"][0]["url"] for s in slots}) == 4
    for slot, data in zip(slots, pictures, strict=True):
        assert put_bytes(slot, data).status_code == 200
    task_id = create(api, "bg-replace", src_file_id=slots[2]["file_id"], prompt="white marble")
    assert task_id


def test_refuse_answers_400_to_a_batch_and_still_serves_one_file(api: httpx.Client,
                                                                 sandbox: SandboxHandle) -> None:
    sandbox.configure(file_batch="refuse")
    pictures = [picture(), picture(70, 50)]
    resp = _ask(api, pictures)
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "InvalidParameters"
    assert "at most 1" in resp.json()["error"]
    one = _ask(api, pictures[:1])
    assert one.status_code == 200 and len(one.json()["data"]["files"]) == 1


def test_fewer_slots_answers_only_the_first_files_slot(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(file_batch="fewer_slots")
    resp = _ask(api, [picture(), picture(70, 50), picture(80, 60)])
    assert resp.status_code == 200
    assert [s["file_name"] for s in resp.json()["data"]["files"]] == ["p0.jpg"]


def test_a_batch_is_one_request_in_the_journal_and_in_the_rate_limit(api: httpx.Client,
                                                                     sandbox: SandboxHandle) -> None:
    assert _ask(api, [picture()] * 5).status_code == 200
    files = [e for e in sandbox.journal() if e.get("route") == "file"]
    assert len(files) == 1
