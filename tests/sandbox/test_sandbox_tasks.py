"""Task API: create on both slugs, validation, polling envelopes, engine checks, results, delete."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.support.images import picture
from tests.support.loopback import LoopbackHTTP
from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, create, poll, poll_until_done, storage

SLUGS = ["bg-replace", "bg-replace-v2"]


@pytest.mark.parametrize("slug", SLUGS)
def test_prompt_task_succeeds_with_a_jpeg_of_the_input_size(
    api: httpx.Client, upload: Upload, sandbox: SandboxHandle, slug: str
) -> None:
    file_id = upload(picture(120, 80))
    resp = api.post(f"/s2s/v2.0/task/{slug}", json={"src_file_id": file_id, "prompt": "a beach"})
    assert resp.status_code == 200
    task_id = resp.json()["data"]["task_id"]
    assert len(task_id) == 64 and set(task_id) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    body = poll(api, task_id, slug).json()
    assert body["status"] == 200
    assert body["data"]["task_status"] == "success"
    assert body["data"]["error"] is None
    assert set(body["data"]) == {"task_status", "error", "results"}
    result = storage.get(body["data"]["results"]["url"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "binary/octet-stream"
    assert result.content[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(result.content)).size == (120, 80)
    assert sandbox.ledger()["balance"] == 10000 - 4


def test_slugs_are_aliases_for_polling_only_when_lenient(api: httpx.Client, upload: Upload,
                                                         sandbox: SandboxHandle) -> None:
    task_id = create(api, "bg-replace-v2", src_file_id=upload())
    assert poll(api, task_id, "bg-replace").json()["error_code"] == "InvalidTaskId"  # strict by default (issue 14)
    sandbox.configure(poll_slug_check="lenient")
    assert poll(api, task_id, "bg-replace").json()["data"]["task_status"] == "success"


def test_each_poll_gives_a_working_result_url(api: httpx.Client, upload: Upload) -> None:
    task_id = create(api, src_file_id=upload())
    urls = [poll(api, task_id).json()["data"]["results"]["url"] for _ in range(2)]
    assert all(storage.get(u).status_code == 200 for u in urls)


def test_template_task_without_template_id_uses_the_default(
    api: httpx.Client, upload: Upload, sandbox: SandboxHandle
) -> None:
    task_id = create(api, src_file_id=upload(), type="template")
    assert poll_until_done(api, task_id)["task_status"] == "success"
    (task,) = sandbox.tasks()
    assert task["type"] == "template" and task["template_id"] == "nature_cherryblossom"


def test_prompt_task_ignores_template_id(api: httpx.Client, upload: Upload,
                                         sandbox: SandboxHandle) -> None:
    create(api, src_file_id=upload(), prompt="snow", template_id="no-such-template")
    (task,) = sandbox.tasks()
    assert (task["type"], task["prompt"], task["template_id"]) == ("prompt", "snow", None)


@pytest.mark.parametrize(("body", "status", "code"), [
    ({}, 400, "InvalidParameters"),  # neither source
    ({"prompt": "x"}, 400, "InvalidParameters"),
    ({"src_file_id": "F", "src_file_url": "http://127.0.0.1/a.jpg"}, 400, "InvalidParameters"),
    ({"src_file_url": "http://127.0.0.1/a.jpg", "type": "mask"}, 400, "InvalidParameters"),
    ({"src_file_url": "http://127.0.0.1/a.jpg", "type": "template", "template_id": "nope"},
     400, "InvalidParameters"),
    ({"src_file_url": "http://127.0.0.1/a.jpg", "prompt": 5}, 400, "InvalidParameters"),
    # an unexpected parameter is BadRequest, not InvalidParameters
    ({"src_file_url": "http://127.0.0.1/a.jpg", "negative_prompt": "x"}, 400, "BadRequest"),
    ({"src_file_url": "http://127.0.0.1/a.jpg", "msk_file_id": "x"}, 400, "BadRequest"),
])
def test_create_validation(api: httpx.Client, sandbox: SandboxHandle, body: dict[str, object],
                           status: int, code: str) -> None:
    resp = api.post("/s2s/v2.0/task/bg-replace", json=body)
    assert resp.status_code == status
    assert resp.json()["status"] == status
    assert resp.json()["error_code"] == code
    assert resp.json()["error"]
    assert sandbox.tasks() == []


def test_create_missing_source_message(api: httpx.Client) -> None:
    resp = api.post("/s2s/v2.0/task/bg-replace", json={"prompt": "x"})
    assert resp.json()["error"] == 'Object has missing required properties (["src_file_id"])'


def test_create_with_too_few_units_is_credit_insufficiency(
    api: httpx.Client, upload: Upload, sandbox: SandboxHandle
) -> None:
    file_id = upload()
    sandbox.set_balance(3)
    resp = api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": file_id})
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "CreditInsufficiency"
    assert sandbox.tasks() == []


def test_poll_unknown_task_is_invalid_task_id(api: httpx.Client) -> None:
    resp = poll(api, "x" * 64)
    assert resp.status_code == 400
    assert resp.json() == {"status": 400, "error": "Invalid task ID", "error_code": "InvalidTaskId"}


def test_running_poll_envelope(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    sandbox.configure(duration_mode="fixed", duration_median_s=3600)
    task_id = create(api, src_file_id=upload())
    assert poll(api, task_id).json() == {
        "status": 200, "data": {"error": None, "results": None, "task_status": "running"}}


def test_src_file_url_on_loopback_succeeds(api: httpx.Client, loopback: LoopbackHTTP) -> None:
    loopback.routes["/p.png"] = (200, picture(50, 40, "PNG"))
    task_id = create(api, src_file_url=loopback.url("/p.png"), prompt="forest")
    data = poll_until_done(api, task_id)
    assert data["task_status"] == "success"
    out = storage.get(data["results"]["url"]).content
    assert Image.open(io.BytesIO(out)).size == (50, 40)


@pytest.mark.parametrize(("route", "code"), [
    ((404, b"gone"), "error_download_image"),
    ((200, b"plain text, not a picture"), "error_decode_image"),
    ((200, b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024)), "exceed_max_filesize"),
    ((200, b"GIF89a" + b"\0" * 64), "error_decode_image"),  # decodable by some, not allowed
])
def test_src_file_url_engine_errors(api: httpx.Client, loopback: LoopbackHTTP,
                                    sandbox: SandboxHandle, route: tuple[int, bytes],
                                    code: str) -> None:
    loopback.routes["/x"] = route
    data = poll_until_done(api, create(api, src_file_url=loopback.url("/x")))
    assert data["task_status"] == "error"
    assert data["error"] == code
    assert data["error_message"]
    assert data["results"] is None
    assert sandbox.ledger()["charges"] == []


def test_src_file_url_unreachable_or_not_http(api: httpx.Client) -> None:
    for url in ("http://127.0.0.1:9/none.jpg", "ftp://127.0.0.1/a.jpg"):
        data = poll_until_done(api, create(api, src_file_url=url))
        assert (data["task_status"], data["error"]) == ("error", "error_download_image")


def test_uploaded_picture_over_4096_is_exceed_max_image_size(api: httpx.Client,
                                                             upload: Upload) -> None:
    file_id = upload(picture(4097, 8, "PNG"), "wide.png", "image/png")
    data = poll_until_done(api, create(api, src_file_id=file_id))
    assert data["error"] == "error_exceed_max_image_size"


def test_uploaded_garbage_is_decode_error(api: httpx.Client, upload: Upload) -> None:
    data = poll_until_done(api, create(api, src_file_id=upload(b"\xff\xd8\xff not really")))
    assert data["error"] == "error_decode_image"


def test_delete_finished_task(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    file_id = upload()
    task_id = create(api, src_file_id=file_id)
    url = poll(api, task_id).json()["data"]["results"]["url"]
    resp = api.post("/s2s/v2.0/task/delete", json={"task_id": task_id})
    assert (resp.status_code, resp.json()) == (200, {"status": 200})
    assert poll(api, task_id).json()["error_code"] == "InvalidTaskId"
    assert storage.get(url).status_code == 404
    assert sandbox.ledger()["balance"] == 10000 - 4  # no refund
    # the input file went with it
    assert api.post("/s2s/v2.0/task/bg-replace", json={"src_file_id": file_id}).status_code == 500
    again = api.post("/s2s/v2.0/task/delete", json={"task_id": task_id})
    assert again.json()["error_code"] == "InvalidTaskId"


def test_delete_running_task_is_operation_invalid(api: httpx.Client, upload: Upload,
                                                  sandbox: SandboxHandle) -> None:
    sandbox.configure(duration_mode="fixed", duration_median_s=3600)
    task_id = create(api, src_file_id=upload())
    resp = api.post("/s2s/v2.0/task/delete", json={"task_id": task_id})
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "OperationInvalid"
    assert poll(api, task_id).json()["data"]["task_status"] == "running"


@pytest.mark.parametrize(("body", "code"), [
    ({"task_id": "unknown"}, "InvalidTaskId"),
    ({}, "InvalidParameters"),
])
def test_delete_errors(api: httpx.Client, body: dict[str, str], code: str) -> None:
    resp = api.post("/s2s/v2.0/task/delete", json=body)
    assert resp.status_code == 400
    assert resp.json()["error_code"] == code


@pytest.mark.parametrize("slug", SLUGS)
def test_templates_page_through_the_catalogue(api: httpx.Client, slug: str) -> None:
    from backdrop.sandbox import imaging

    seen, token = [], None
    while True:
        params = {"page_size": 1} | ({"starting_token": token} if token else {})
        body = api.get(f"/s2s/v2.0/task/template/{slug}", params=params).json()
        assert body["status"] == 200
        seen += body["data"]["templates"]
        token = body["data"]["next_token"]
        if token is None:
            break
    assert [t["id"] for t in seen] == [t["id"] for t in imaging.TEMPLATES]
    first = seen[0]
    assert set(first) == {"id", "thumb", "title", "category_name"}
    thumb = storage.get(first["thumb"])
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("params", [{"page_size": 0}, {"page_size": 21}, {"page_size": "x"},
                                    {"starting_token": "!!"}])
def test_templates_bad_paging_is_400(api: httpx.Client, params: dict[str, object]) -> None:
    resp = api.get("/s2s/v2.0/task/template/bg-replace", params=params)
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "InvalidParameters"
