"""Scripted outcomes: `[[sandbox:...]]` markers in the prompt, the file name or the URL."""

from __future__ import annotations

import httpx
import pytest

from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, create, poll, poll_until_done


def test_error_marker_ends_the_task_with_that_code(api: httpx.Client, upload: Upload,
                                                   sandbox: SandboxHandle) -> None:
    task_id = create(api, src_file_id=upload(),
                     prompt="beach [[sandbox:error=error_nsfw_content_detected]]")
    data = poll_until_done(api, task_id)
    assert (data["task_status"], data["error"]) == ("error", "error_nsfw_content_detected")
    (task,) = sandbox.tasks()
    assert task["prompt"] == "beach"  # markers never reach the picture
    assert sandbox.ledger()["charges"] == []


def test_error_marker_in_the_file_name(api: httpx.Client, upload: Upload) -> None:
    file_id = upload(name="shoe[[sandbox:error=error_no_face]].jpg")
    assert poll_until_done(api, create(api, src_file_id=file_id))["error"] == "error_no_face"


def test_duration_marker(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    # 30 vendor seconds at 200x: 0.15 s real, although the key is in immediate mode
    sandbox.configure(time_scale=200)
    task_id = create(api, src_file_id=upload(), prompt="[[sandbox:duration=30]] sky")
    assert poll(api, task_id).json()["data"]["task_status"] == "running"
    assert poll_until_done(api, task_id)["task_status"] == "success"
    (task,) = sandbox.tasks()
    assert (task["duration_s"], task["prompt"]) == (30, "sky")


def test_lost_marker(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    file_id = upload()
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/s2s/v2.0/task/bg-replace",
                 json={"src_file_id": file_id, "prompt": "[[sandbox:lost]]"})
    (task,) = sandbox.tasks()
    assert task["lost"] is True


@pytest.mark.parametrize("status", [500, 503])
def test_http_marker_answers_that_status_and_makes_no_task(
    api: httpx.Client, upload: Upload, sandbox: SandboxHandle, status: int
) -> None:
    resp = api.post("/s2s/v2.0/task/bg-replace",
                    json={"src_file_id": upload(), "prompt": f"[[sandbox:http={status}]]"})
    assert resp.status_code == status
    assert resp.json()["status"] == status
    assert sandbox.tasks() == []


def test_marker_in_src_file_url(api: httpx.Client) -> None:
    url = "http://127.0.0.1:9/a.jpg?x=[[sandbox:error=error_pose]]"
    assert poll_until_done(api, create(api, src_file_url=url))["error"] == "error_pose"
