"""The sandbox closer to the vendor where the docs say something: a PUT carrying Authorization is refused, the
documented poll 500 TaskTimeout (off by default), and `polling_interval` in create and poll answers (off by default)."""

from __future__ import annotations

import time

import httpx

from tests.support.images import picture
from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, create, poll, poll_until_done, put_bytes, request_slot
from tests.support.waiting import wait_until as wait_for

TIMEOUT_BODY = {"status": 500, "error": "Task execution timed out", "error_code": "TaskTimeout"}


def test_a_presigned_put_that_carries_authorization_is_refused(api: httpx.Client) -> None:
    data = picture()
    slot = request_slot(api, data)
    refused = put_bytes(slot, data, Authorization="Bearer sandbox-key")
    assert refused.status_code == 403
    assert "<Code>AccessDenied</Code>" in refused.text and "Only one auth mechanism" in refused.text
    # nothing was stored: a create on that file is the documented missing-upload 500
    resp = api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": slot["file_id"], "prompt": "beach"})
    assert resp.status_code == 500 and resp.json()["error_code"] == "unknown_internal_error"
    # the same PUT without the header (what Backdrop sends) goes through
    assert put_bytes(slot, data).status_code == 200


def test_no_polling_interval_unless_configured(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    resp = api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": upload(), "prompt": "beach"})
    assert "polling_interval" not in resp.json()["data"]
    assert "polling_interval" not in poll(api, resp.json()["data"]["task_id"]).json()["data"]
    assert sandbox.configure()["polling_interval_s"] is None


def test_polling_interval_is_sent_in_create_and_poll_answers(api: httpx.Client, upload: Upload,
                                                             sandbox: SandboxHandle) -> None:
    sandbox.configure(polling_interval_s=4, duration_mode="fixed", duration_median_s=1, time_scale=20)
    resp = api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": upload(), "prompt": "beach"})
    assert resp.json()["data"]["polling_interval"] == 4
    task_id = resp.json()["data"]["task_id"]
    running = poll(api, task_id).json()["data"]
    assert (running["task_status"], running["polling_interval"]) == ("running", 4)
    done = poll_until_done(api, task_id)
    assert (done["task_status"], done["polling_interval"]) == ("success", 4)


def test_task_timeout_is_the_documented_500_and_is_never_charged(api: httpx.Client, upload: Upload,
                                                                 sandbox: SandboxHandle) -> None:
    # 30 vendor seconds of work, timing out at 10: at 100x, 0.1 s real
    sandbox.configure(task_timeout_s=10, duration_mode="fixed", duration_median_s=30, time_scale=100)
    balance = sandbox.ledger()["balance"]
    task_id = create(api, src_file_id=upload())
    assert poll(api, task_id).json()["data"]["task_status"] == "running"
    timed_out = wait_for(lambda: (r := poll(api, task_id)).status_code == 500 and r)
    assert timed_out.json() == TIMEOUT_BODY
    time.sleep(0.3)  # past the task's own duration: it never finishes
    again = poll(api, task_id)
    assert (again.status_code, again.json()) == (500, TIMEOUT_BODY)
    (task,) = [t for t in sandbox.tasks() if t["task_id"] == task_id]
    assert (task["status"], task["charged"]) == ("running", 0)
    assert sandbox.ledger()["balance"] == balance


def test_tasks_shorter_than_the_timeout_finish_as_usual(api: httpx.Client, upload: Upload,
                                                        sandbox: SandboxHandle) -> None:
    sandbox.configure(task_timeout_s=10, duration_mode="fixed", duration_median_s=5, time_scale=100)
    assert poll_until_done(api, create(api, src_file_id=upload()))["task_status"] == "success"
    assert sandbox.configure()["task_timeout_s"] == 10
