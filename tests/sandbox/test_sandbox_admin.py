"""Admin API: health, config, reset, journal, tasks, thumbnails."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.sandbox import TLS, SandboxHandle
from tests.support.vendor_api import Upload, create, storage


def test_health_needs_no_key(sandbox: SandboxHandle) -> None:
    resp = storage.get(sandbox.base_url + "/_sandbox/health")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("path", ["/_sandbox/config", "/_sandbox/ledger", "/_sandbox/journal",
                                  "/_sandbox/tasks", "/_sandbox/webhooks"])
def test_admin_needs_an_accepted_key(sandbox: SandboxHandle, path: str) -> None:
    resp = httpx.get(sandbox.base_url + path, headers={"Authorization": "Bearer intruder"},
                     trust_env=False, verify=TLS)
    assert resp.status_code == 401
    assert resp.json()["error_code"] == "InvalidApiKey"


def test_config_hides_secrets_and_key_rules(sandbox: SandboxHandle) -> None:
    config = sandbox.admin.get("/_sandbox/config").json()
    assert config["duration_mode"] == "immediate"  # set by the fixture
    assert config["units_per_task"] == 4 and config["polling_window_s"] == 600
    for hidden in ("signing_secret", "webhook_secret", "api_keys", "key_pattern"):
        assert hidden not in config


@pytest.mark.parametrize(("change", "fragment"), [
    ({"signing_secret": "x"}, "signing_secret"),
    ({"webhook_secret": "whsec_eA=="}, "webhook_secret"),
    ({"api_keys": ["mine"]}, "api_keys"),
    ({"no_such_field": 1}, "no_such_field"),
    ({"duration_mode": "sometimes"}, "duration_mode"),
    ({"time_scale": 0}, "time_scale"),
    ({"fault_routes": ["upload"]}, "fault_routes"),
])
def test_patch_config_rejects(sandbox: SandboxHandle, change: dict[str, object],
                              fragment: str) -> None:
    resp = sandbox.admin.patch("/_sandbox/config", json=change)
    assert resp.status_code == 400
    assert fragment in resp.json()["error"]
    assert sandbox.admin.get("/_sandbox/config").json()["duration_mode"] == "immediate"


def test_reset_clears_state_and_overrides(api: httpx.Client, upload: Upload,
                                          sandbox: SandboxHandle) -> None:
    create(api, src_file_id=upload())
    sandbox.configure(units_per_task=7)
    assert sandbox.admin.post("/_sandbox/reset").status_code == 200
    assert sandbox.tasks() == [] and sandbox.journal() == []
    assert sandbox.ledger() == {"balance": 10000, "starting_balance": 10000, "charges": []}
    config = sandbox.admin.get("/_sandbox/config").json()
    assert (config["units_per_task"], config["duration_mode"]) == (4, "lognormal")


def test_journal_rows(api: httpx.Client, sandbox: SandboxHandle) -> None:
    before = time.time()
    api.get("/s2s/v2.0/credit/feature-cost", params={"page_size": 2})
    (row,) = sandbox.journal()
    assert before <= row["received"] <= row["time"] <= time.time()  # counted, then answered
    assert row["method"] == "GET" and row["path"] == "/s2s/v2.0/credit/feature-cost"
    assert (row["status"], row["route"], row["client"]) == (200, "feature_cost", "127.0.0.1")
    assert row["key"] == "*" * (len(sandbox.api_key) - 4) + sandbox.api_key[-4:]
    assert sandbox.api_key not in str(row)


def test_tasks_rows(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    task_id = create(api, "bg-replace-v2", src_file_id=upload(), prompt="desert")
    (row,) = sandbox.tasks()
    assert row["task_id"] == task_id and row["slug"] == "bg-replace-v2"
    assert (row["status"], row["charged"], row["polls"], row["error"]) == ("success", 4, 0, None)
    assert row["finished"] >= row["created"]


def test_put_ledger_validates(sandbox: SandboxHandle) -> None:
    resp = sandbox.admin.put("/_sandbox/ledger", json={"balance": "lots"})
    assert resp.status_code == 400


def test_template_thumbnails(sandbox: SandboxHandle) -> None:
    ok = storage.get(sandbox.base_url + "/_sandbox/templates/nature_cherryblossom.jpg")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    assert ok.content[:3] == b"\xff\xd8\xff"
    assert storage.get(sandbox.base_url + "/_sandbox/templates/none.jpg").status_code == 404
