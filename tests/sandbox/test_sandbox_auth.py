"""Auth, routing, request ids and per-key isolation."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.sandbox import TLS, SandboxHandle
from tests.support.vendor_api import Upload, create, poll

INVALID_KEY = {"status": 401, "error": "This API key is not recognized.",
               "error_code": "InvalidApiKey"}
INVALID_TOKEN = {"status": 401, "error": "Unauthorized", "error_code": "InvalidAccessToken"}
NOT_FOUND = {"status": 404, "error": "Not Found"}

VENDOR_CALLS = [
    ("POST", "/s2s/v2.0/file"), ("POST", "/s2s/v2.0/file/bg-replace-v2"),
    ("POST", "/s2s/v2.0/task/bg-replace"), ("GET", "/s2s/v2.0/task/bg-replace/abc"),
    ("GET", "/s2s/v2.0/task/template/bg-replace"), ("POST", "/s2s/v2.0/task/delete"),
    ("GET", "/s2s/v2.0/credit/feature-cost"),
]


@pytest.mark.parametrize(("method", "path"), VENDOR_CALLS)
@pytest.mark.parametrize("auth", [None, "Bearer nope", "Bearer  sandbox-key", "sandbox-key",
                                  "Basic c2FuZGJveC1rZXk="])
def test_bad_or_missing_key_is_401(sandbox: SandboxHandle, method: str, path: str,
                                   auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    resp = httpx.request(method, sandbox.base_url + path, headers=headers, json={},
                         trust_env=False, verify=TLS)
    assert resp.status_code == 401
    assert resp.json() == INVALID_KEY


@pytest.mark.parametrize("path", ["/s2s/v1.0/client/credit", "/s2s/v1.0/client/credit/history"])
def test_credit_routes_use_the_access_token_401(sandbox: SandboxHandle, path: str) -> None:
    resp = httpx.get(sandbox.base_url + path, headers={"Authorization": "Bearer x"},
                     trust_env=False, verify=TLS)
    assert (resp.status_code, resp.json()) == (401, INVALID_TOKEN)


def test_the_default_key_is_accepted(sandbox: SandboxHandle) -> None:
    resp = httpx.get(sandbox.base_url + "/s2s/v2.0/credit/feature-cost",
                     headers={"Authorization": "Bearer sandbox-key"}, trust_env=False, verify=TLS)
    assert resp.status_code == 200


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/s2s/v2.0/task/face-analyzer/abc"),
    ("POST", "/s2s/v2.0/task/face-analyzer"),
    ("POST", "/s2s/v2.0/file/face-analyzer"),
    ("GET", "/s2s/v2.0/task/template/sod"),
    ("GET", "/s2s/v3.0/nothing"),
    ("GET", "/elsewhere"),
])
def test_unknown_routes_and_slugs_are_404(api: httpx.Client, method: str, path: str) -> None:
    resp = api.request(method, path, json={"src_file_url": "http://127.0.0.1/a.jpg"})
    assert (resp.status_code, resp.json()) == (404, NOT_FOUND)


def test_every_answer_has_a_request_id(api: httpx.Client, sandbox: SandboxHandle) -> None:
    answers = [api.get("/s2s/v2.0/credit/feature-cost"), api.get("/nowhere"),
               sandbox.admin.get("/_sandbox/ledger"), sandbox.admin.get("/_sandbox/health"),
               api.put("/_storage/upload/bad")]
    ids = [r.headers["x-request-id"] for r in answers]
    assert all(i.isdigit() and int(i) > 2**40 for i in ids)
    assert len(set(ids)) == len(ids)
    journal = sandbox.journal()
    assert journal[0]["request_id"] == ids[0]


def test_keys_are_isolated(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    file_id = upload()
    task_id = create(api, src_file_id=file_id)
    other_key = f"sandbox-{uuid.uuid4().hex}"
    with httpx.Client(base_url=sandbox.base_url, trust_env=False, verify=TLS,
                      headers={"Authorization": f"Bearer {other_key}"}) as other:
        other.patch("/_sandbox/config", json={"rate_limit_per_ip": False})
        assert poll(other, task_id).json()["error_code"] == "InvalidTaskId"
        resp = other.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": file_id})
        assert resp.status_code == 500  # another key's file is unknown here
        assert other.get("/_sandbox/tasks").json() == []
        assert other.get("/_sandbox/ledger").json()["balance"] == 10000
        assert other.get("/_sandbox/config").json()["duration_mode"] == "lognormal"
        other.post("/_sandbox/reset")
    assert sandbox.ledger()["balance"] == 9996
