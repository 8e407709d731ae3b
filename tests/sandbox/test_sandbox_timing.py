"""Task timing, the background loop, the polling window, URL expiry and task lifetime."""

from __future__ import annotations

import re
import time

import httpx

from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, create, poll, poll_until_done, storage
from tests.support.waiting import wait_until


def test_fixed_duration_runs_then_succeeds(api: httpx.Client, upload: Upload,
                                           sandbox: SandboxHandle) -> None:
    # 10 vendor seconds at 100x: 0.1 s real
    sandbox.configure(duration_mode="fixed", duration_median_s=10, time_scale=100)
    task_id = create(api, src_file_id=upload())
    assert poll(api, task_id).json()["data"]["task_status"] == "running"
    assert poll_until_done(api, task_id)["task_status"] == "success"
    (task,) = sandbox.tasks()
    assert task["duration_s"] == 10
    assert task["polls"] >= 2


def test_background_loop_finishes_and_charges_without_polls(
    api: httpx.Client, upload: Upload, sandbox: SandboxHandle
) -> None:
    sandbox.configure(duration_mode="fixed", duration_median_s=5, time_scale=100)
    task_id = create(api, src_file_id=upload())
    done = wait_until(lambda: [t for t in sandbox.tasks() if t["status"] != "running"])
    assert [(t["task_id"], t["status"], t["polls"], t["charged"]) for t in done] == [
        (task_id, "success", 0, 4)]
    assert sandbox.ledger()["balance"] == 9996


def test_lognormal_durations_follow_the_seed(api: httpx.Client, upload: Upload,
                                             sandbox: SandboxHandle) -> None:
    def durations(seed: int) -> list[float]:
        sandbox.admin.post("/_sandbox/reset")  # also restarts the per-key draw order
        sandbox.configure(duration_mode="lognormal", seed=seed, rate_limit_enabled=False,
                          rate_limit_per_ip=False)
        file_id = upload()
        for _ in range(4):
            create(api, src_file_id=file_id)
        return [t["duration_s"] for t in sandbox.tasks()]

    first, again, other = durations(1), durations(1), durations(2)
    assert first == again
    assert first != other
    assert len(set(first)) == 4 and all(d > 0 for d in first)


def test_unpolled_task_expires_yet_is_charged(api: httpx.Client, upload: Upload,
                                              sandbox: SandboxHandle) -> None:
    # window 1 vendor second at 100x = 10 ms real; the task is due at once
    sandbox.configure(polling_window_s=1, time_scale=100)
    task_id = create(api, src_file_id=upload())
    time.sleep(0.1)
    resp = poll(api, task_id)
    assert (resp.status_code, resp.json()["error_code"]) == (400, "InvalidTaskId")
    (task,) = sandbox.tasks()
    assert (task["status"], task["expired"], task["charged"]) == ("success", True, 4)
    assert sandbox.ledger()["balance"] == 9996


def test_polling_keeps_a_task_alive(api: httpx.Client, upload: Upload,
                                    sandbox: SandboxHandle) -> None:
    # window 2 vendor s at 10x = 0.2 s real; polls every 10 ms for 0.5 s real keep it alive
    sandbox.configure(polling_window_s=2, time_scale=10, duration_mode="fixed",
                      duration_median_s=5)
    task_id = create(api, src_file_id=upload())
    assert poll_until_done(api, task_id)["task_status"] == "success"


def test_result_url_expires(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    sandbox.configure(result_url_ttl_s=0.02)
    url = poll(api, create(api, src_file_id=upload())).json()["data"]["results"]["url"]
    # a GET changes nothing: ask until the 20 ms are up (a URL that never expires fails on the deadline)
    resp = wait_until(lambda: (r := storage.get(url)).status_code == 403 and r, 5,
                      message="the result URL never expired")
    assert "<Code>AccessDenied</Code>" in resp.text


def test_result_url_forged_is_403(api: httpx.Client, upload: Upload) -> None:
    url = poll(api, create(api, src_file_id=upload())).json()["data"]["results"]["url"]
    forged = re.sub(r"signature=[0-9a-f]+", "signature=" + "a" * 64, url)
    resp = storage.get(forged)
    assert resp.status_code == 403
    assert "SignatureDoesNotMatch" in resp.text


def test_task_is_forgotten_after_its_ttl(api: httpx.Client, upload: Upload,
                                         sandbox: SandboxHandle) -> None:
    sandbox.configure(task_ttl_s=0.05)
    task_id = create(api, src_file_id=upload())
    assert wait_until(lambda: sandbox.tasks() == [], 5)
    assert poll(api, task_id).json()["error_code"] == "InvalidTaskId"
