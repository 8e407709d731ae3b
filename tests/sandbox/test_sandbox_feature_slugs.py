"""The sandbox's feature-cost list names the background-change slugs an account has (`feature_cost_slugs`), and a
task answers only under the slug it was created under (`poll_slug_check`, strict by default): issue 14."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, create, poll, poll_until_done


def _listed(api: httpx.Client, page_size: int = 20) -> list[dict[str, Any]]:
    skus, token = [], None
    while True:
        params = {"page_size": page_size} | ({"starting_token": token} if token else {})
        body = api.get("/s2s/v2.0/credit/feature-cost", params=params).json()
        assert body["status"] == 200
        skus += body["result"]["skus"]
        if not (token := body["result"]["next_token"]):
            return skus


def _slugs(skus: list[dict[str, Any]]) -> list[str]:
    return [s["run_task_url"].rsplit("/task/", 1)[1] for s in skus
            if s["run_task_url"].rsplit("/task/", 1)[1] in ("bg-replace", "bg-replace-v2")]


@pytest.mark.parametrize(("setting", "slugs"), [
    (None, ["bg-replace"]), ("both", ["bg-replace", "bg-replace-v2"]), ("bg-replace", ["bg-replace"]),
    ("bg-replace-v2", ["bg-replace-v2"]), ("none", []),
])
def test_the_feature_cost_list_names_the_configured_slugs(api: httpx.Client, sandbox: SandboxHandle,
                                                          setting: str | None, slugs: list[str]) -> None:
    if setting is not None:
        sandbox.configure(feature_cost_slugs=setting)
    skus = _listed(api)
    assert _slugs(skus) == slugs
    assert _slugs(_listed(api, page_size=1)) == slugs  # the same over pages of one
    assert all(s["amount"] == 4 for s in skus if s["run_task_url"].rsplit("/task/", 1)[1] in slugs)
    assert len(skus) == 5 + len(slugs)  # the other features' SKUs stay


@pytest.mark.parametrize(("made", "asked"), [("bg-replace", "bg-replace-v2"), ("bg-replace-v2", "bg-replace")])
def test_a_task_polled_under_the_other_slug_is_an_invalid_task_id(api: httpx.Client, upload: Upload,
                                                                 sandbox: SandboxHandle, made: str,
                                                                 asked: str) -> None:
    task_id = create(api, slug=made, src_file_id=upload())
    wrong = poll(api, task_id, slug=asked)
    assert wrong.status_code == 400
    assert wrong.json() == {"status": 400, "error": "Invalid task ID", "error_code": "InvalidTaskId"}
    assert poll_until_done(api, task_id, slug=made)["task_status"] == "success"  # its own slug still answers
    sandbox.configure(poll_slug_check="lenient")
    assert poll_until_done(api, task_id, slug=asked)["task_status"] == "success"
