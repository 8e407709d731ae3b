"""BACKDROP_FEATURE=auto (issue 14): the slug a run creates under comes from the account's feature-cost list, the
slug each task is polled under from its ledger row, and template rows never reach a slug without templates."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from backdrop.client import BackdropClient, FeatureCost
from backdrop.errors import AuthError, ConfigError, RateLimited, ServerError
from backdrop.pipeline.feature import (
    choose_feature,
    created_under,
    listed_slugs,
    reject_unsupported_templates,
)
from backdrop.pipeline.inputs import InputRow
from backdrop.pipeline.plan import WorkItem
from backdrop.pipeline.preflight import PreparedInput
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger
from tests.client.helpers import NoWait

pytestmark = pytest.mark.anyio

BASE = "https://yce-api-01.makeupar.com"
OTHER = FeatureCost(description="AI Photo Background Removal", amount=1, unit="result_image", proc_unit=1,
                    run_task_url=f"{BASE}/s2s/v2.0/task/sod")
LISTS: dict[str, list[str]] = {"both": ["bg-replace-v2", "bg-replace"], "bg-replace": ["bg-replace"],
                               "bg-replace-v2": ["bg-replace-v2"], "none": []}


def _sku(slug: str) -> FeatureCost:
    return FeatureCost(description="AI Photo Background Change", amount=4, unit="result_image", proc_unit=1,
                       run_task_url=f"{BASE}/s2s/v2.0/task/{slug}")


def _settings(**fields: Any) -> BackdropSettings:
    return BackdropSettings(**{"api_key": "sk-one", **fields})


def _reader(costs: list[FeatureCost]) -> Any:
    calls: list[int] = []

    async def read() -> list[FeatureCost]:
        calls.append(1)
        return costs

    read.calls = calls  # type: ignore[attr-defined]
    return read


@pytest.mark.parametrize(("listed", "dry_run", "slug", "route"), [
    ("both", False, "bg-replace", "universal"),
    ("bg-replace", False, "bg-replace", "universal"),
    ("bg-replace-v2", False, "bg-replace-v2", "feature"),
    ("both", True, "bg-replace", "universal"),
    ("bg-replace-v2", True, "bg-replace-v2", "feature"),
])
async def test_auto_takes_the_slug_the_list_names(listed: str, dry_run: bool, slug: str, route: str) -> None:
    read = _reader([OTHER, *(_sku(s) for s in LISTS[listed])])
    choice = await choose_feature(_settings(), read, dry_run=dry_run)
    assert (choice.slug, choice.settings.feature, choice.settings.upload_route) == (slug, slug, route)
    assert choice.note is None and choice.stop() == {} and read.calls == [1]
    assert set(choice.listed) == set(LISTS[listed])


async def test_a_list_naming_neither_stops_a_paid_run_and_lets_a_dry_run_assume_bg_replace() -> None:
    paid = await choose_feature(_settings(), _reader([OTHER]), dry_run=False)
    assert paid.slug is None and paid.settings.feature == "auto"
    assert paid.note is not None and "names neither bg-replace nor bg-replace-v2" in paid.note
    assert "nothing is created" in paid.note and "BACKDROP_FEATURE" in paid.note
    assert paid.stop() == {"feature_unknown": paid.note}
    dry = await choose_feature(_settings(), _reader([]), dry_run=True)
    assert dry.slug is None and dry.settings.feature == "bg-replace" and dry.settings.upload_route == "universal"
    assert dry.note is not None and "this dry run assumes bg-replace" in dry.note


async def test_an_unreadable_list_is_said_in_one_line_and_nothing_is_guessed() -> None:
    reads: list[int] = []
    pauses: list[float] = []

    async def broken() -> list[FeatureCost]:
        reads.append(1)
        raise ServerError("upstream said 503", status=503)

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    choice = await choose_feature(_settings(), broken, dry_run=False, sleep=sleep)
    assert choice.slug is None and choice.settings.feature == "auto" and choice.stop()
    assert choice.note is not None and "could not be read (server_error" in choice.note and "\n" not in choice.note
    assert (len(reads), pauses) == (3, [1.0, 2.0])  # a retryable error is read again, twice, after a pause


async def test_a_list_that_answers_after_a_429_is_read_and_a_refusal_is_not_read_again() -> None:
    answers: list[Any] = [RateLimited("Too many requests", status=429), [_sku("bg-replace-v2")]]

    async def flaky() -> list[FeatureCost]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    async def sleep(seconds: float) -> None:
        return None

    assert (await choose_feature(_settings(), flaky, dry_run=False, sleep=sleep)).slug == "bg-replace-v2"
    refused: list[int] = []

    async def unauthorised() -> list[FeatureCost]:
        refused.append(1)
        raise AuthError("This API key is not recognized.", status=401)

    choice = await choose_feature(_settings(), unauthorised, dry_run=False, sleep=sleep)
    assert choice.slug is None and refused == [1]


@pytest.mark.parametrize("slug", ["bg-replace", "bg-replace-v2"])
async def test_a_slug_the_setting_names_is_forced_and_the_list_never_read(slug: str) -> None:
    read = _reader([])
    choice = await choose_feature(_settings(feature=slug), read, dry_run=False)
    assert (choice.slug, choice.note, read.calls) == (slug, None, [])


def test_listed_slugs_reads_the_task_path_whatever_the_host() -> None:
    odd = [FeatureCost(description="x", amount=1, unit="u", proc_unit=1, run_task_url=u) for u in (
        "https://other.example/s2s/v2.0/task/bg-replace/", "https://x/s2s/v2.0/task/bg-replace-vid",
        "https://x/s2s/v2.0/task/sod/change-background", None)]
    assert listed_slugs(odd) == {"bg-replace"}
    assert listed_slugs([_sku("bg-replace-v2"), OTHER]) == {"bg-replace-v2"}


@pytest.mark.parametrize(("listed", "slug"), [("both", "bg-replace"), ("bg-replace-v2", "bg-replace-v2"),
                                              ("none", None)])
async def test_the_list_is_read_over_every_page_of_the_sandbox(sandbox: Any, listed: str, slug: str | None) -> None:
    """Through HTTP, one SKU a page: bg-replace-v2 is the sandbox's last SKU, on the sixth page."""
    sandbox.configure(feature_cost_slugs=listed, rate_limit_enabled=False)
    settings = _settings(api_url=sandbox.base_url, api_key=sandbox.api_key)
    async with BackdropClient(settings, limiter=NoWait()) as client:
        choice = await choose_feature(settings, functools.partial(client.feature_costs, page_size=1), dry_run=False)
        pages = client.stats.requests["feature_cost"]
    assert choice.slug == slug and pages >= 5


async def test_the_client_never_sends_auto_as_a_slug(sandbox: Any) -> None:
    settings = _settings(api_url=sandbox.base_url, api_key=sandbox.api_key)
    async with BackdropClient(settings, limiter=NoWait()) as client:
        with pytest.raises(ConfigError, match="BACKDROP_FEATURE=auto is resolved"):
            await client.get_task("t1")
        with pytest.raises(ConfigError) as refused:
            await client.create_task(src_file_url="https://example.com/a.jpg", prompt="beach")
    assert refused.value.refused  # never sent: a definite refusal, not an ambiguous create
    assert not [j for j in sandbox.journal() if "/task/" in j["path"]]


def _item(key: str, line: int, template: str | None) -> WorkItem:
    prepared = PreparedInput(sha256="ab" * 32, path="a.jpg", content_type="image/jpeg", size=1, width=1, height=1)
    row = InputRow(line=line, row_id=f"r{line}", image_url="a.jpg", prompt=None if template else "beach",
                   template_id=template)
    return WorkItem(key=key, prepared=prepared, source="a.jpg", task_type="template" if template else "prompt",
                    prompt=None if template else "beach", template_id=template, rows=[row])


def test_template_rows_fail_preflight_on_a_slug_without_templates(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    items = [_item("p", 1, None), _item("t", 2, "nature_cherryblossom"), _item("paid", 3, "t2"),
             _item("flying", 4, "t3"), _item("refused", 5, "t4")]
    ledger.claim("paid", 1, feature="bg-replace-v2")
    ledger.mark("paid", 1, status="succeeded", task_id="task-paid")
    ledger.claim("flying", 1, feature="bg-replace-v2")
    ledger.mark("flying", 1, status="created", task_id="task-flying")
    ledger.claim("refused", 1)
    ledger.mark("refused", 1, status="failed", error_code="InvalidParameters")
    kept, rejected = reject_unsupported_templates(items, "bg-replace-v2", ledger)
    assert [i.key for i in kept] == ["p", "paid", "flying"]  # a paid or in-flight picture is reused or polled
    assert sorted(rejected) == [2, 5]
    assert {r.report_code for r in rejected.values()} == {"template_unsupported"}
    assert "nothing was paid" in rejected[2].message and "bg-replace-v2" in rejected[2].message
    for slug in ("bg-replace", None):
        assert reject_unsupported_templates(items, slug, ledger) == (items, {})


def test_a_row_is_polled_under_the_slug_it_recorded_else_the_old_default(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.claim("a", 1, feature="bg-replace")
    ledger.claim("b", 1, feature="bg-replace-v2")
    ledger.claim("c", 1)
    assert [created_under(ledger.latest(k)) for k in "abc"] == ["bg-replace", "bg-replace-v2",  # type: ignore[arg-type]
                                                                 "bg-replace-v2"]


def test_migration_moves_one_old_key_per_picture_the_paid_one_first(tmp_path: Path) -> None:
    """A picture with rows under both slugs' old ids: the paid history moves (its slug recorded), the other
    stays under its old key; so the new key's latest attempt is never a failure that would be created again."""
    from backdrop.identity import content_key, environment_id, slug_environment_id
    from backdrop.store.migrate import move_legacy_rows

    settings = _settings(account="shop")
    ledger, new_env = Ledger(f"sqlite:///{tmp_path / 'l.db'}"), environment_id(settings)

    def old(slug: Any, prompt: str, attempts: list[str]) -> None:
        env = slug_environment_id(settings, slug)
        key = content_key(image_sha256="ab" * 32, prompt=prompt, template_id=None, task_type="prompt",
                          environment=env)
        for n, status in enumerate(attempts, start=1):
            ledger.claim(key, n, environment=env, image_sha256="ab" * 32, prompt=prompt)
            ledger.mark(key, n, status=status, task_id=f"{slug}-{prompt}-{n}")

    old("bg-replace", "beach", ["failed", "failed"])  # refused twice under one slug
    old("bg-replace-v2", "beach", ["succeeded"])  # paid under the other
    old("bg-replace", "marble", ["created"])  # in flight under bg-replace
    assert move_legacy_rows(ledger, settings, new_env) == 2
    beach = content_key(image_sha256="ab" * 32, prompt="beach", template_id=None, task_type="prompt",
                        environment=new_env)
    latest = ledger.latest(beach)
    assert latest is not None and (latest.status, latest.feature) == ("succeeded", "bg-replace-v2")
    marble = ledger.latest(content_key(image_sha256="ab" * 32, prompt="marble", template_id=None,
                                       task_type="prompt", environment=new_env))
    assert marble is not None and (marble.status, created_under(marble)) == ("created", "bg-replace")
    assert len(ledger.entries(environment=slug_environment_id(settings, "bg-replace"))) == 2  # the refusals stay
    assert move_legacy_rows(ledger, settings, new_env) == 0  # once
