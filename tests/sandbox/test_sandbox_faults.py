"""Fault injection: 5xx, drops, slow answers, 429 bursts, engine errors, lost creates."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.images import picture
from tests.support.sandbox import TLS, SandboxHandle
from tests.support.vendor_api import Upload, poll_until_done, put_bytes, request_slot
from tests.support.waiting import wait_until

CREDIT = "/s2s/v1.0/client/credit"


def test_5xx_answers_before_any_work(api: httpx.Client, upload: Upload,
                                     sandbox: SandboxHandle) -> None:
    file_id = upload()
    sandbox.configure(fault_5xx_rate=1.0)
    statuses = set()
    for _ in range(12):
        resp = api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": file_id})
        statuses.add(resp.status_code)
        if resp.status_code == 500:
            assert resp.json()["error_code"] == "unknown_internal_error"
        if resp.status_code == 502:
            assert "text/html" in resp.headers["content-type"]  # from the "load balancer"
    assert statuses <= {500, 502, 503} and len(statuses) > 1
    assert sandbox.tasks() == []


def test_faults_follow_the_seed(sandbox: SandboxHandle) -> None:
    def run(seed: int) -> list[int]:
        key = f"sandbox-seed-{uuid.uuid4().hex[:10]}"
        with httpx.Client(base_url=sandbox.base_url, trust_env=False, verify=TLS,
                          headers={"Authorization": f"Bearer {key}"}) as c:
            c.patch("/_sandbox/config", json={"fault_5xx_rate": 0.5, "seed": seed,
                                               "rate_limit_enabled": False})
            out = [c.get(CREDIT).status_code for _ in range(16)]
            c.post("/_sandbox/reset")
            return out

    first = run(7)
    assert run(7) == first
    assert run(8) != first
    assert 200 in first and set(first) - {200}


def test_drop_resets_the_connection(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(fault_drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        api.get(CREDIT)
    (entry,) = sandbox.journal()
    assert (entry["route"], entry["status"], entry["fault"]) == ("credit", None, "drop")


def test_slow_answer_times_a_client_out(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(fault_slow_rate=1.0, fault_slow_s=3)
    with pytest.raises(httpx.ReadTimeout):
        api.get(CREDIT, timeout=httpx.Timeout(5.0, read=0.2))


def test_slow_answer_still_answers(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(fault_slow_rate=1.0, fault_slow_s=0.05)
    assert api.get(CREDIT).status_code == 200
    assert [e.get("fault") for e in sandbox.journal()] == ["slow"]


def test_429_burst_has_its_length(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(fault_429_burst_rate=1.0, fault_429_burst_len=3)
    assert api.get(CREDIT).json() == {"status": 429, "error": "Too many requests"}
    sandbox.configure(fault_429_burst_rate=0.0)  # no new burst; the started one runs out
    assert [api.get(CREDIT).status_code for _ in range(3)] == [429, 429, 200]


def test_engine_error_fault(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    file_id = upload()
    sandbox.configure(fault_engine_error_rate=1.0)
    resp = api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": file_id})
    data = poll_until_done(api, resp.json()["data"]["task_id"])
    assert (data["task_status"], data["error"]) == ("error", "error_inference")
    assert sandbox.ledger()["charges"] == []


def test_lost_create_makes_the_task_and_drops_the_answer(
    api: httpx.Client, upload: Upload, sandbox: SandboxHandle
) -> None:
    file_id = upload()
    sandbox.configure(fault_lost_create_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": file_id, "prompt": "moon"})
    (task,) = sandbox.tasks()
    assert (task["lost"], task["prompt"]) == (True, "moon")
    # it runs and is billed like any other task: the client must reconcile, not re-create
    assert wait_until(lambda: sandbox.ledger()["charges"])[0]["task_id"] == task["task_id"]
    assert [e.get("fault") for e in sandbox.journal() if e["route"] == "create"] == ["lost"]


def test_lost_create_loses_nothing_when_create_is_rejected(
    api: httpx.Client, sandbox: SandboxHandle
) -> None:
    sandbox.configure(fault_lost_create_rate=1.0)
    resp = api.post("/s2s/v2.0/task/bg-replace", json={})
    assert resp.status_code == 400


def test_fault_routes_limit_where_faults_apply(api: httpx.Client, upload: Upload,
                                              sandbox: SandboxHandle) -> None:
    file_id = upload()
    sandbox.configure(fault_5xx_rate=1.0, fault_routes=["create"])
    assert api.get(CREDIT).status_code == 200
    assert api.post("/s2s/v2.0/task/bg-replace",
                    json={"src_file_id": file_id}).status_code in (500, 502, 503)


def test_faults_never_touch_storage_or_admin(api: httpx.Client, sandbox: SandboxHandle) -> None:
    data = picture()
    slot = request_slot(api, data)
    sandbox.configure(fault_drop_rate=1.0, fault_5xx_rate=1.0)
    assert put_bytes(slot, data).status_code == 200
    assert sandbox.ledger()["balance"] == 10000
