"""Two keys, two accounts, one host (an agency with several clients), against a sandbox that limits per key *and*
per client address, as the vendor documents (issue 14, "Pacing per key and per egress IP").

Each key's budget alone would let its batch take the whole address budget in the first window, so pacing per key
only draws 429s from the address. Both cases of one host are run: two clients in one process (the in-process
egress budget) and two `backdrop run` processes sharing the database limiter (a SQLite file). The sandbox runs
in real time with a short window (16 requests per 5 s, 5 per second), as in the two-worker deployment test: a
sandbox run faster shrinks its 1 s window below a busy event loop's stalls.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from backdrop.client import BackdropClient
from backdrop.pacing import limiter_for
from backdrop.sandbox import SandboxServer, SandboxSettings
from backdrop.settings import BackdropSettings
from tests.flows.helpers import write_csv
from tests.flows.test_crash_and_concurrency import BIN, _cli_env
from tests.support.images import draw_product
from tests.support.sandbox import TLS, SandboxHandle

WINDOW_SECONDS = 5.0
WINDOW_REQUESTS = 16  # per key and per address: either batch alone could fill the address's window
PICTURES = 5  # per batch: 5 x (file, create, polls) + the run's own calls, well over one window per key


@pytest.fixture
def host() -> Iterator[tuple[SandboxHandle, SandboxHandle]]:
    """A sandbox of our own (no other test's requests in its per-address bucket) and two keys on it."""
    with SandboxServer(SandboxSettings(allow_private_fetch=True)) as server:
        handles = []
        for _ in range(2):
            key = f"sandbox-{uuid.uuid4().hex}"
            admin = httpx.Client(base_url=server.base_url, trust_env=False, timeout=10.0, verify=TLS,
                                 headers={"Authorization": f"Bearer {key}"})
            handle = SandboxHandle(server, key, admin)
            config = handle.configure(duration_mode="fixed", duration_median_s=0.3, rate_limit_per_ip=True,
                                      rate_limit_requests=WINDOW_REQUESTS, rate_limit_window_s=WINDOW_SECONDS,
                                      rate_limit_per_second=5)
            assert config["rate_limit_enabled"] and config["rate_limit_per_ip"]
            handles.append(handle)
        try:
            yield handles[0], handles[1]
        finally:
            for handle in handles:
                handle.admin.close()


def refused(handle: SandboxHandle) -> list[dict[str, Any]]:
    """The sandbox's 429s to this key, by whichever budget refused them."""
    return [e for e in handle.journal() if e["status"] == 429]


def test_two_clients_in_one_process_draw_no_429_from_the_address(
    host: tuple[SandboxHandle, SandboxHandle], tmp_path: Path,
) -> None:
    src = draw_product(tmp_path / "p.jpg", (200, 40, 40))

    async def batch(handle: SandboxHandle) -> list[str]:
        settings = BackdropSettings(api_url=handle.base_url, api_key=handle.api_key, feature="bg-replace",
                                    rate_limit_requests=WINDOW_REQUESTS, rate_limit_window_seconds=WINDOW_SECONDS,
                                    max_retries=0)  # a 429 fails the request instead of hiding behind a retry

        async def picture(i: int) -> str:
            file_id = await client.upload_file(src, content_type="image/jpeg")
            task = await client.create_task(src_file_id=file_id, prompt=f"beach {i}")
            for _ in range(200):  # polled as the pipeline does: each poll paced like any request
                status = await client.get_task(task.task_id)
                if status.status != "running":
                    return status.status
                await asyncio.sleep(0.2)
            raise AssertionError(f"task {task.task_id} still running")

        async with BackdropClient(settings, limiter=limiter_for(settings)) as client:
            return list(await asyncio.gather(*(picture(i) for i in range(PICTURES))))

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(batch(host[0]), batch(host[1])))

    assert asyncio.run(both()) == [["success"] * PICTURES] * 2
    for handle in host:
        assert refused(handle) == []
        assert len(handle.tasks()) == PICTURES


def test_two_batches_in_two_processes_share_the_address_through_the_database(
    host: tuple[SandboxHandle, SandboxHandle], tmp_path: Path,
) -> None:
    procs = []
    limiter = f"sqlite:///{tmp_path / 'limiter.db'}"
    for n, handle in enumerate(host):
        folder = tmp_path / f"client{n}"
        folder.mkdir()
        for i in range(PICTURES):
            draw_product(folder / f"{i}.jpg", (20 + 40 * i, 60 + 90 * n, 200 - 30 * i))
        csv = write_csv(folder, [{"id": f"r{i}", "image_url": f"{i}.jpg", "prompt": "beach"} for i in range(PICTURES)])
        env = _cli_env(handle, folder)  # its own key, account (the key) and BACKDROP_HOME
        env.update(BACKDROP_LIMITER_URL=limiter, BACKDROP_RATE_LIMIT_REQUESTS=str(WINDOW_REQUESTS),
                   BACKDROP_RATE_LIMIT_WINDOW_SECONDS=str(WINDOW_SECONDS), BACKDROP_FEATURE="bg-replace")
        procs.append(subprocess.Popen([str(BIN / "backdrop"), "run", str(csv), "--out", str(folder / "out"),
                                       "--concurrency", str(PICTURES), "--json-output"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    for n, handle in enumerate(host):
        report = pd.read_csv(tmp_path / f"client{n}" / "out" / "report.csv")
        assert list(report["status"]) == ["succeeded"] * PICTURES
        assert refused(handle) == []
        assert len(handle.tasks()) == PICTURES
    both = sum(len([e for e in h.journal() if e.get("route") not in ("storage_upload", "storage_result")])
               for h in host)
    assert both > WINDOW_REQUESTS  # the address's window was really at stake
