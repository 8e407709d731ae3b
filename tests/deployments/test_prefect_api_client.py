"""The deployment tests' REST client outlasts a busy Prefect server (a 503 when SQLite is locked) and nothing else.

CI once lost the whole deployment test to one 503 on `create_flow_run` while a worker was writing to the same
SQLite file; Prefect's own client would have sent it again.
"""

from __future__ import annotations

import httpx
import pytest

from tests.deployments.helpers import RetryBusy


def _client(statuses: list[int], delays: tuple[float, ...] = (0.0, 0.0, 0.0)) -> tuple[httpx.Client, list[str]]:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.content.decode())
        return httpx.Response(statuses.pop(0), json={"n": len(sent)})

    transport = RetryBusy(delays, inner=httpx.MockTransport(answer))
    return httpx.Client(base_url="http://prefect.test/api", transport=transport), sent


def test_a_busy_answer_is_sent_again_with_the_same_body() -> None:
    client, sent = _client([503, 503, 201])
    created = client.post("/deployments/d/create_flow_run", json={"parameters": {"csv": "a.csv"}})
    assert (created.status_code, created.json()) == (201, {"n": 3})
    assert len(set(sent)) == 1 and len(sent) == 3


@pytest.mark.parametrize("status", [200, 201, 409, 422, 500])
def test_any_other_answer_is_final(status: int) -> None:
    client, sent = _client([status, 201])
    assert client.post("/flow_runs/", json={}).status_code == status
    assert len(sent) == 1


def test_a_server_busy_past_every_delay_gives_its_503() -> None:
    client, sent = _client([503] * 4, delays=(0.0, 0.0, 0.0))
    assert client.get("/health").status_code == 503
    assert len(sent) == 4  # the first try and one after each delay
