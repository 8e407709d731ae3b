"""A program written only from the vendor's docs, pointed at the sandbox.

`change_background` follows the bundle's Integration Guide and the Playground-style sample:
POST /s2s/v2.0/file, PUT the bytes with the returned headers (no Authorization), POST the task,
GET it every 2 s until `success` or `error`, download `results.url`. Nothing here knows it talks
to a sandbox, except that the test's "2 s" are vendor seconds (the sandbox runs 100x faster).
"""

from __future__ import annotations

import io
import time

import httpx
from PIL import Image

from tests.support.sandbox import SandboxHandle

TIME_SCALE = 100.0


def change_background(base_url: str, api_key: str, image: bytes, prompt: str,
                      poll_every_s: float = 2.0, max_polls: int = 300) -> bytes:
    auth = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=auth, timeout=30, trust_env=False) as api:
        upload = api.post("/s2s/v2.0/file", json={"files": [
            {"content_type": "image/jpeg", "file_name": "photo.jpg", "file_size": len(image)}]})
        upload.raise_for_status()
        file = upload.json()["data"]["files"][0]
        slot = file["requests"][0]
        with httpx.Client(trust_env=False) as storage:
            storage.request(slot["method"], slot["url"], content=image,
                            headers=slot["headers"]).raise_for_status()
            run = api.post("/s2s/v2.0/task/bg-replace",
                           json={"src_file_id": file["file_id"], "prompt": prompt})
            run.raise_for_status()
            task_id = run.json()["data"]["task_id"]
            for _ in range(max_polls):
                time.sleep(poll_every_s)
                status = api.get(f"/s2s/v2.0/task/bg-replace/{task_id}")
                status.raise_for_status()
                data = status.json()["data"]
                if data["task_status"] == "success":
                    result = storage.get(data["results"]["url"])
                    result.raise_for_status()
                    return result.content
                if data["task_status"] == "error":
                    raise RuntimeError(f"task failed: {data['error']}")
    raise TimeoutError("task still running")


def units(base_url: str, api_key: str) -> float:
    resp = httpx.get(f"{base_url}/s2s/v1.0/client/credit", trust_env=False,
                     headers={"Authorization": f"Bearer {api_key}"})
    resp.raise_for_status()
    return sum(lot["amount_dec"] for lot in resp.json()["results"])


def test_program_from_docs_gets_a_jpeg_and_pays_4_units(sandbox: SandboxHandle) -> None:
    # The vendor's timing, 100x faster: ~10 s tasks, polls every 2 s (both in vendor seconds).
    sandbox.configure(duration_mode="lognormal", time_scale=TIME_SCALE)
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (240, 240, 240)).save(buf, "JPEG")
    before = units(sandbox.base_url, sandbox.api_key)
    out = change_background(sandbox.base_url, sandbox.api_key, buf.getvalue(),
                            "A sunny beach with palm trees.", poll_every_s=2 / TIME_SCALE)
    assert out[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(out)).size == (320, 240)
    assert units(sandbox.base_url, sandbox.api_key) == before - 4
