"""Unit system: balance, history, feature cost, and the admin ledger behind them."""

from __future__ import annotations

import httpx
import pytest

from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, create, poll_until_done


def _succeed(api: httpx.Client, upload: Upload, n: int) -> list[str]:
    ids = [create(api, src_file_id=upload()) for _ in range(n)]
    assert all(poll_until_done(api, t)["task_status"] == "success" for t in ids)
    return ids


def test_credit_balance_falls_by_4_per_success(api: httpx.Client, upload: Upload) -> None:
    before = api.get("/s2s/v1.0/client/credit").json()
    _succeed(api, upload, 2)
    after = api.get("/s2s/v1.0/client/credit").json()
    (lot0,), (lot1,) = before["results"], after["results"]
    assert before["status"] == 200 and set(before) == {"status", "results"}
    assert lot0["type"] == "ApiPaygToken"
    assert (lot0["amount"], lot0["amount_dec"]) == (10000, 10000.0)
    assert (lot1["amount"], lot1["amount_dec"]) == (9992, 9992.0)
    assert lot1["id"] == lot0["id"] and lot0["id"] > 2**53  # ids exceed double precision
    assert lot1["expiry"] > 1_700_000_000_000


def test_errors_cost_nothing(api: httpx.Client, sandbox: SandboxHandle) -> None:
    data = poll_until_done(api, create(api, src_file_url="http://127.0.0.1:9/x.jpg"))
    assert data["task_status"] == "error"
    assert api.get("/s2s/v1.0/client/credit").json()["results"][0]["amount"] == 10000
    assert sandbox.ledger() == {"balance": 10000, "starting_balance": 10000, "charges": []}


def test_history_lists_charges_newest_first_and_pages(api: httpx.Client, upload: Upload) -> None:
    ids = _succeed(api, upload, 3)
    body = api.get("/s2s/v1.0/client/credit/history").json()
    assert body["status"] == 200 and body["result"]["next_token"] is None
    history = body["result"]["history"]
    assert [h["target_id"] for h in history] == ids[::-1]
    entry = history[0]
    assert entry["action"] == "change_background"
    assert entry["info"]["credits"][0]["amount"] == -4
    assert entry["info"]["credits"][0]["amount_dec"] == -4.0
    assert entry["info"]["dst_actions"] == []
    assert entry["timestamp"] > 1_700_000_000_000
    paged, token = [], None
    while True:
        params = {"page_size": 2} | ({"starting_token": token} if token else {})
        result = api.get("/s2s/v1.0/client/credit/history", params=params).json()["result"]
        paged += [h["target_id"] for h in result["history"]]
        token = result["next_token"]
        if not token:
            break
    assert paged == ids[::-1]


@pytest.mark.parametrize(("path", "size"), [("/s2s/v1.0/client/credit/history", 31),
                                            ("/s2s/v1.0/client/credit/history", 0),
                                            ("/s2s/v2.0/credit/feature-cost", 21)])
def test_paging_limits(api: httpx.Client, path: str, size: int) -> None:
    resp = api.get(path, params={"page_size": size})
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "InvalidParameters"


def test_feature_cost_lists_bg_replace_at_4_units(api: httpx.Client) -> None:
    body = api.get("/s2s/v2.0/credit/feature-cost").json()
    assert body["status"] == 200
    skus = body["result"]["skus"]
    assert skus[0] == {"description": "AI Photo Background Change V2.0", "amount": 4,
                       "unit": "result_image", "proc_unit": 1,
                       "run_task_url": f"{str(api.base_url).rstrip('/')}/s2s/v2.0/task/bg-replace"}
    legacy = next(s for s in skus if s["description"] == "AI Photo Background Change V1.0")
    assert legacy["amount"] == 1 and legacy["run_task_url"].endswith("/sod/change-background")
    assert body["result"]["next_token"] is None
    first = api.get("/s2s/v2.0/credit/feature-cost", params={"page_size": 2}).json()["result"]
    rest = api.get("/s2s/v2.0/credit/feature-cost",
                   params={"page_size": 20, "starting_token": first["next_token"]}).json()["result"]
    assert first["skus"] + rest["skus"] == skus


def test_admin_ledger_rows_and_balance(api: httpx.Client, upload: Upload,
                                       sandbox: SandboxHandle) -> None:
    (task_id,) = _succeed(api, upload, 1)
    ledger = sandbox.ledger()
    assert ledger["balance"] == 9996 and ledger["starting_balance"] == 10000
    assert [(c["task_id"], c["units"]) for c in ledger["charges"]] == [(task_id, 4)]
    assert sandbox.set_balance(40)["balance"] == 40
    assert api.get("/s2s/v1.0/client/credit").json()["results"][0]["amount"] == 40
    sandbox.configure(units_per_task=10)
    _succeed(api, upload, 1)
    assert sandbox.ledger()["balance"] == 30


def test_starting_balance_is_per_key_config(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(starting_balance=8)
    assert api.get("/s2s/v1.0/client/credit").json()["results"][0]["amount"] == 8
