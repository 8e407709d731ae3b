"""The sandbox's real answers, validated against the vendor's OpenAPI bundles."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.contract import bundles as b
from tests.support.images import picture
from tests.support.sandbox import TLS, SandboxHandle
from tests.support.vendor_api import create, poll, poll_until_done, put_bytes, request_slot

TASK = "/s2s/v2.0/task/bg-replace"
STATUS = "/s2s/v2.0/task/bg-replace/{task_id}"
TEMPLATES = "/s2s/v2.0/task/template/bg-replace"


def _check(resp: httpx.Response, schema: dict[str, Any], status: int,
           *, closed: bool = True) -> dict[str, Any]:
    """Validate an answer; `closed` also refuses fields the bundle does not list."""
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    b.validate(body, b.closed(schema) if closed else schema)
    assert body["status"] == status  # every vendor body repeats its HTTP status
    return body


def _uploaded(api: httpx.Client) -> str:
    data = picture()
    slot = request_slot(api, data)
    assert put_bytes(slot, data).status_code == 200
    file_id: str = slot["file_id"]
    return file_id


def test_file_api_200(api: httpx.Client) -> None:
    resp = api.post("/s2s/v2.0/file", json={"files": [
        {"content_type": "image/jpg", "file_name": "my-selfie.jpg", "file_size": 50000}]})
    body = _check(resp, b.file_response_schema(), 200)
    assert body["data"]["files"][0]["requests"][0]["method"] == "PUT"


def test_file_api_400(api: httpx.Client) -> None:
    _check(api.post("/s2s/v2.0/file", json={}),
           b.response_schema(b.FILE_API, "/s2s/v2.0/file", "post", 400), 400)


def test_task_create_200_and_poll_success(api: httpx.Client) -> None:
    body = _check(api.post(TASK, json={"src_file_id": _uploaded(api), "prompt": "A sunny beach"}),
                  b.response_schema(b.BG_CHANGE, TASK, "post", 200), 200)
    data = poll_until_done(api, body["data"]["task_id"])
    assert data["task_status"] == "success"
    _check(poll(api, body["data"]["task_id"]), b.task_status_schema(), 200)


def test_poll_running(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(duration_mode="fixed", duration_median_s=3600)
    body = _check(poll(api, create(api, src_file_id=_uploaded(api))), b.task_status_schema(), 200)
    assert body["data"]["task_status"] == "running"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/none.jpg",
                                 "http://127.0.0.1:9/x.jpg#[[sandbox:error=error_no_face]]"])
def test_poll_error_codes_are_in_the_vendor_enum(api: httpx.Client, url: str) -> None:
    task_id = create(api, src_file_url=url)
    assert poll_until_done(api, task_id)["task_status"] == "error"
    body = _check(poll(api, task_id), b.task_status_schema(), 200)
    assert body["data"]["error_message"]


@pytest.mark.parametrize(("body", "code"), [
    ({}, "InvalidParameters"),
    ({"src_file_url": "http://127.0.0.1/a.jpg", "extra": 1}, "BadRequest"),
])
def test_task_create_400(api: httpx.Client, body: dict[str, Any], code: str) -> None:
    # RunError is wrapped in a one-member allOf: validated as published
    answer = _check(api.post(TASK, json=body),
                    b.response_schema(b.BG_CHANGE, TASK, "post", 400), 400)
    assert answer["error_code"] == code


def test_task_create_400_credit(api: httpx.Client, sandbox: SandboxHandle) -> None:
    file_id = _uploaded(api)
    sandbox.set_balance(0)
    answer = _check(api.post(TASK, json={"src_file_id": file_id}),
                    b.response_schema(b.BG_CHANGE, TASK, "post", 400), 400)
    assert answer["error_code"] == "CreditInsufficiency"


def test_task_create_429(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(rate_limit_enabled=True, rate_limit_requests=1)
    api.get("/s2s/v1.0/client/credit")
    _check(api.post(TASK, json={}), b.response_schema(b.BG_CHANGE, TASK, "post", 429), 429)


def test_poll_400(api: httpx.Client) -> None:
    # Open: the bundle's InvalidTaskId lists only `error`; D7/D10 also show `error_code`.
    body = _check(poll(api, "grH0CvsgXuAIHLUzD0V1Ol34hoet3R1tvdbtiVHrDb6_UqCLKIejAIajwxrhOAfe"),
                  b.response_schema(b.BG_CHANGE, STATUS, "get", 400), 400, closed=False)
    assert (body["error"], body["error_code"]) == ("Invalid task ID", "InvalidTaskId")


@pytest.mark.parametrize(("path", "bundle_path", "name"), [
    (TASK, TASK, b.BG_CHANGE), ("/s2s/v2.0/task/bg-replace/x", STATUS, b.BG_CHANGE),
    (TEMPLATES, TEMPLATES, b.BG_CHANGE), ("/s2s/v2.0/file", "/s2s/v2.0/file", b.FILE_API),
    ("/s2s/v2.0/task/delete", "/s2s/v2.0/task/delete", b.TASKS),
    ("/s2s/v2.0/credit/feature-cost", "/s2s/v2.0/credit/feature-cost", b.UNITS),
])
def test_401_invalid_api_key(sandbox: SandboxHandle, path: str, bundle_path: str,
                             name: str) -> None:
    doc = b.bundle(name)
    method = next(iter(doc["paths"][bundle_path]))
    resp = httpx.request(method, sandbox.base_url + path, json={}, trust_env=False, verify=TLS,
                         headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401
    # Open, not closed: the live 401 adds error_code, which the bundles do not list.
    b.validate(resp.json(), b.response_schema(name, bundle_path, method, 401, doc))


def test_templates_200_and_400(api: httpx.Client) -> None:
    body = _check(api.get(TEMPLATES, params={"page_size": 3}),
                  b.response_schema(b.BG_CHANGE, TEMPLATES, "get", 200), 200)
    assert len(body["data"]["templates"]) == 3 and body["data"]["next_token"]
    _check(api.get(TEMPLATES, params={"page_size": 99}),
           b.response_schema(b.BG_CHANGE, TEMPLATES, "get", 400), 400)


def test_delete_200_and_400s(api: httpx.Client, sandbox: SandboxHandle) -> None:
    path = "/s2s/v2.0/task/delete"
    err = b.response_schema(b.TASKS, path, "post", 400)
    task_id = create(api, src_file_id=_uploaded(api))
    _check(api.post(path, json={"task_id": task_id}), b.response_schema(b.TASKS, path, "post", 200),
           200)
    again = _check(api.post(path, json={"task_id": task_id}), err, 400)
    assert again["error_code"] == "InvalidTaskId"
    assert _check(api.post(path, json={}), err, 400)["error_code"] == "InvalidParameters"
    sandbox.configure(duration_mode="fixed", duration_median_s=3600)
    running = create(api, src_file_id=_uploaded(api))
    assert _check(api.post(path, json={"task_id": running}), err, 400)["error_code"] == (
        "OperationInvalid")


def test_credit_200_and_401(api: httpx.Client, sandbox: SandboxHandle) -> None:
    path = "/s2s/v1.0/client/credit"
    _check(api.get(path), b.response_schema(b.UNITS, path, "get", 200), 200)
    # The bundle's `Unauthorized` response has no body schema; the history route's
    # InvalidAccessToken body is the nearest documented one.
    resp = httpx.get(sandbox.base_url + path, headers={"Authorization": "Bearer nope"},
                     trust_env=False, verify=TLS)
    b.validate(resp.json(), b.response_schema(b.UNITS, path + "/history", "get", 401))
    assert resp.json()["error_code"] == "InvalidAccessToken"


def test_credit_history_200_400_401(api: httpx.Client, sandbox: SandboxHandle) -> None:
    path = "/s2s/v1.0/client/credit/history"
    task_id = create(api, src_file_id=_uploaded(api))
    assert poll_until_done(api, task_id)["task_status"] == "success"
    body = _check(api.get(path), b.response_schema(b.UNITS, path, "get", 200), 200)
    assert body["result"]["history"][0]["target_id"] == task_id
    _check(api.get(path, params={"page_size": 31}), b.response_schema(b.UNITS, path, "get", 400),
           400)
    resp = httpx.get(sandbox.base_url + path, trust_env=False, verify=TLS)
    # Open: the live body (contract 6.1) also carries `error`, which the bundle does not list.
    b.validate(resp.json(), b.response_schema(b.UNITS, path, "get", 401))
    assert resp.json()["error_code"] == "InvalidAccessToken"


def test_feature_cost_200_and_400(api: httpx.Client) -> None:
    path = "/s2s/v2.0/credit/feature-cost"
    body = _check(api.get(path), b.response_schema(b.UNITS, path, "get", 200), 200)
    assert any(s["run_task_url"].endswith("/s2s/v2.0/task/bg-replace") and s["amount"] == 4
               for s in body["result"]["skus"])
    _check(api.get(path, params={"page_size": 0}), b.response_schema(b.UNITS, path, "get", 400),
           400)


def test_bundle_examples_fit_their_own_schemas() -> None:
    """A guard on the repairs: the vendor's own example ids fit the repaired schemas."""
    ok = {"status": 200, "data": {"task_status": "success", "error": None,
                                  "results": {"url": "https://example.com/sample-result-url"}}}
    b.validate(ok, b.closed(b.task_status_schema()))
    bad = {"status": 200, "data": {"task_status": "done", "error": None, "results": None}}
    assert not b.is_valid(bad, b.task_status_schema())
