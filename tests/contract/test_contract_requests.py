"""Request bodies: what the vendor's schemas refuse, the sandbox refuses (and the few places
where the sandbox is stricter, on the contract's word)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.contract import bundles as b

FILE_OK = {"content_type": "image/jpg", "file_name": "my-selfie.jpg", "file_size": 50000}
URL = "https://example.com/selfie.jpg"


@pytest.mark.parametrize("body", [
    {},
    {"files": "x"},
    {"files": [{}]},
    {"files": [{"content_type": "image/jpg", "file_name": "a.jpg"}]},
    {"files": [{**FILE_OK, "file_size": "50000"}]},
    {"files": [{**FILE_OK, "content_type": 5}]},
])
def test_file_bodies_the_schema_refuses_are_refused(api: httpx.Client, body: Any) -> None:
    assert not b.is_valid(body, b.request_schema(b.FILE_API, "/s2s/v2.0/file", "post"))
    resp = api.post("/s2s/v2.0/file", json=body)
    assert (resp.status_code, resp.json()["error_code"]) == (400, "InvalidParameters")


def test_file_bodies_the_schema_accepts(api: httpx.Client) -> None:
    schema = b.request_schema(b.FILE_API, "/s2s/v2.0/file", "post")
    accepted = {"files": [FILE_OK]}
    assert b.is_valid(accepted, schema)
    assert api.post("/s2s/v2.0/file", json=accepted).status_code == 200
    # Stricter on purpose: the schema allows any content type (video/mp4 exists for other
    # features) and any size, but this feature takes jpg/jpeg/png under 10 MB (D1, D2).
    for item in ({**FILE_OK, "content_type": "video/mp4"}, {**FILE_OK, "file_size": 11 << 20}):
        assert b.is_valid({"files": [item]}, schema)
        assert api.post("/s2s/v2.0/file", json={"files": [item]}).status_code == 400


@pytest.mark.parametrize("body", [
    {},
    {"prompt": "A sunny beach with palm trees."},
    {"src_file_url": 5},
    {"src_file_url": URL, "type": "mask"},
    {"src_file_url": URL, "prompt": ["x"]},
])
def test_task_bodies_the_schema_refuses_are_refused(api: httpx.Client, body: Any) -> None:
    assert not b.is_valid(body, b.request_schema(b.BG_CHANGE, "/s2s/v2.0/task/bg-replace", "post"))
    resp = api.post("/s2s/v2.0/task/bg-replace", json=body)
    assert (resp.status_code, resp.json()["error_code"]) == (400, "InvalidParameters")


@pytest.mark.parametrize("body", [
    {"src_file_url": URL},
    {"src_file_url": URL, "type": "prompt", "prompt": "A sunny beach with palm trees."},
    {"src_file_url": URL, "type": "template", "template_id": "nature_cherryblossom"},
    {"src_file_url": URL, "type": "template"},
])
def test_task_bodies_the_schema_accepts_are_accepted(api: httpx.Client, body: Any) -> None:
    assert b.is_valid(body, b.request_schema(b.BG_CHANGE, "/s2s/v2.0/task/bg-replace", "post"))
    assert api.post("/s2s/v2.0/task/bg-replace", json=body).status_code == 200


@pytest.mark.parametrize(("body", "code"), [
    # anyOf lets both sources through; the contract (4.1) says give exactly one
    ({"src_file_url": URL, "src_file_id": "pfNK5PuRe0MrwLHcGA3DOmB1ahwfXTbYHjv+KoBIxbE="},
     "InvalidParameters"),
    # the schema does not close the object; the vendor answers BadRequest for unexpected fields
    ({"src_file_url": URL, "seed": 1}, "BadRequest"),
    # template_id must name a listed template (contract 11)
    ({"src_file_url": URL, "type": "template", "template_id": "good_template_001"},
     "InvalidParameters"),
])
def test_task_bodies_where_the_sandbox_is_stricter(api: httpx.Client, body: Any,
                                                   code: str) -> None:
    assert b.is_valid(body, b.request_schema(b.BG_CHANGE, "/s2s/v2.0/task/bg-replace", "post"))
    resp = api.post("/s2s/v2.0/task/bg-replace", json=body)
    assert (resp.status_code, resp.json()["error_code"]) == (400, code)


def test_delete_body_without_task_id(api: httpx.Client) -> None:
    assert not b.is_valid({}, b.request_schema(b.TASKS, "/s2s/v2.0/task/delete", "post"))
    resp = api.post("/s2s/v2.0/task/delete", json={})
    assert (resp.status_code, resp.json()["error_code"]) == (400, "InvalidParameters")
