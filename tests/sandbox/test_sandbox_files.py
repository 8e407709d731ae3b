"""File API: upload slots on both routes, validation bodies, and the signed PUT."""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.images import picture
from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, put_bytes, request_slot, storage

MB10 = 10 * 1024 * 1024


@pytest.mark.parametrize("route", ["/s2s/v2.0/file", "/s2s/v2.0/file/bg-replace",
                                   "/s2s/v2.0/file/bg-replace-v2"])
def test_file_slot_envelope_on_every_route(api: httpx.Client, route: str) -> None:
    resp = api.post(route, json={"files": [
        {"content_type": "image/png", "file_name": "shoe.png", "file_size": 709590}]})
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == 200
    (item,) = body["data"]["files"]
    assert item["content_type"] == "image/png"
    assert item["file_name"] == "shoe.png"
    assert len(item["file_id"]) == 44 and len(base64.b64decode(item["file_id"])) == 32
    (req,) = item["requests"]
    assert req["method"] == "PUT"
    # Real answers send Content-Length as a string.
    assert req["headers"] == {"Content-Length": "709590", "Content-Type": "image/png"}
    url = urlsplit(req["url"])
    assert f"{url.scheme}://{url.netloc}" == str(api.base_url).rstrip("/")
    assert set(parse_qs(url.query)) == {"expires", "signature"}


def test_file_slots_for_several_files_get_distinct_ids(api: httpx.Client) -> None:
    files = [{"content_type": ct, "file_name": f"f{i}", "file_size": 10 + i}
             for i, ct in enumerate(["image/jpg", "image/jpeg", "image/png"])]
    items = api.post("/s2s/v2.0/file", json={"files": files}).json()["data"]["files"]
    assert [i["file_name"] for i in items] == ["f0", "f1", "f2"]
    assert len({i["file_id"] for i in items}) == 3


def test_upload_headers_list_shape(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(upload_headers_shape="list")
    slot = request_slot(api, b"x" * 12)
    assert slot["requests"][0]["headers"] == [
        {"name": "Content-Length", "value": "12"}, {"name": "Content-Type", "value": "image/jpeg"}]


@pytest.mark.parametrize(("body", "message"), [
    ({}, 'Object has missing required properties (["files"])'),
    ({"files": [{"content_type": "image/jpeg", "file_name": "a.jpg"}]},
     "file_size is required but wasn't included in your request."),
    ({"files": [{"file_name": "a.jpg", "file_size": 5}]},
     "content_type is required but wasn't included in your request."),
    ({"files": [{"content_type": "image/jpeg", "file_size": 5}]},
     "file_name is required but wasn't included in your request."),
    ({"files": "a.jpg"},
     'files: instance type (string) does not match any allowed primitive type '
     '(allowed: ["array"])'),
    ({"files": []},
     "files: array is too short: must have at least 1 elements but instance has 0 elements"),
    # a size sent as a string is a type error, as in a JSON-schema validator
    ({"files": [{"content_type": "image/jpeg", "file_name": "a", "file_size": "5"}]},
     'file_size: instance type (string) does not match any allowed primitive type '
     '(allowed: ["integer"])'),
    ({"files": [{"content_type": "image/gif", "file_name": "a.gif", "file_size": 5}]},
     "content_type image/gif is not supported (allowed: image/jpg, image/jpeg, image/png)"),
    # video is a real File API type, but not for this feature
    ({"files": [{"content_type": "video/mp4", "file_name": "a.mp4", "file_size": 5}]},
     "content_type video/mp4 is not supported (allowed: image/jpg, image/jpeg, image/png)"),
    ({"files": [{"content_type": "image/png", "file_name": "a", "file_size": MB10 + 1}]},
     f"file_size {MB10 + 1} exceeds the limit of {MB10} bytes"),
    ({"files": [{"content_type": "image/png", "file_name": "a", "file_size": 0}]},
     "file_size must be greater than 0"),
    ([1, 2],
     'instance type (array) does not match any allowed primitive type (allowed: ["object"])'),
])
def test_file_slot_validation_errors(api: httpx.Client, body: object, message: str) -> None:
    resp = api.post("/s2s/v2.0/file", json=body)
    assert resp.status_code == 400
    assert resp.json() == {"status": 400, "error": message, "error_code": "InvalidParameters"}


def test_file_slot_accepts_exactly_10_mb(api: httpx.Client) -> None:
    resp = api.post("/s2s/v2.0/file", json={"files": [
        {"content_type": "image/png", "file_name": "a", "file_size": MB10}]})
    assert resp.status_code == 200


def test_file_slot_rejects_malformed_json(api: httpx.Client) -> None:
    resp = api.post("/s2s/v2.0/file", content=b"{nope",
                    headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "InvalidParameters"


def test_put_stores_bytes_without_auth_header(api: httpx.Client, sandbox: SandboxHandle) -> None:
    data = picture()
    slot = request_slot(api, data)
    resp = put_bytes(slot, data)  # a bare httpx.put: no Authorization header
    assert resp.status_code == 200
    assert resp.headers["x-request-id"].isdigit()
    upload = [e for e in sandbox.journal() if e["route"] == "storage_upload"]
    assert [(e["method"], e["status"]) for e in upload] == [("PUT", 200)]


def test_put_with_forged_signature_is_403(api: httpx.Client) -> None:
    data = picture()
    slot = request_slot(api, data)
    url = slot["requests"][0]["url"]
    forged = re.sub(r"signature=[0-9a-f]+", "signature=" + "0" * 64, url)
    resp = storage.put(forged, content=data, headers=slot["requests"][0]["headers"])
    assert resp.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in resp.text


def test_put_with_stretched_expiry_is_403(api: httpx.Client) -> None:
    data = picture()
    slot = request_slot(api, data)
    url = slot["requests"][0]["url"]
    later = re.sub(r"expires=[0-9.]+", f"expires={time.time() + 99999:.3f}", url)
    resp = storage.put(later, content=data, headers=slot["requests"][0]["headers"])
    assert resp.status_code == 403


def test_put_after_expiry_is_403(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(upload_url_ttl_s=0.01)
    data = picture()
    slot = request_slot(api, data)
    time.sleep(0.05)
    resp = put_bytes(slot, data)
    assert resp.status_code == 403
    assert "<Code>AccessDenied</Code>" in resp.text


def test_put_with_wrong_length_is_400(api: httpx.Client) -> None:
    data = picture()
    slot = request_slot(api, data)
    req = slot["requests"][0]
    resp = storage.put(req["url"], content=data + b"extra",
                     headers={"Content-Type": "image/jpeg"})
    assert resp.status_code == 400
    assert "IncompleteBody" in resp.text


def test_put_with_other_content_type_is_403(api: httpx.Client) -> None:
    data = picture()
    slot = request_slot(api, data)
    resp = put_bytes(slot, data, **{"Content-Type": "image/png"})
    assert resp.status_code == 403


def test_task_on_file_never_put_is_500_and_makes_no_task(
    api: httpx.Client, sandbox: SandboxHandle
) -> None:
    slot = request_slot(api, picture())
    resp = api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": slot["file_id"]})
    assert resp.status_code == 500
    assert resp.json() == {"status": 500, "error": "unknown_internal_error",
                           "error_code": "unknown_internal_error"}
    assert sandbox.tasks() == []


def test_task_on_unknown_file_id_is_500(api: httpx.Client, upload: Upload) -> None:
    upload()
    resp = api.post("/s2s/v2.0/task/bg-replace",
                    json={"src_file_id": "pfNK5PuRe0MrwLHcGA3DOmB1ahwfXTbYHjv+KoBIxbE="})
    assert resp.status_code == 500
    assert resp.json()["error_code"] == "unknown_internal_error"
