"""What counts as one paid picture (security review, finding 20): the picture's bytes, the prompt as sent
(normalised) or the template, the feature and the account. Never the key, nor how the server's URL is spelt."""

from __future__ import annotations

import sqlite3
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from backdrop import identity
from backdrop.identity import (
    account_environment_ids,
    environment_id,
    key_id,
    legacy_environment_id,
    limiter_key_id,
    normalise_prompt,
    process_limiter_key,
    slug_environment_id,
)
from backdrop.pacing.memory import shared_limiter
from backdrop.pipeline.inputs import InputRow, check_prompt, read_rows
from backdrop.pipeline.plan import group_rows
from backdrop.pipeline.preflight import PreparedInput
from backdrop.settings import BackdropSettings, canonical_service
from backdrop.store.ledger import Ledger
from backdrop.store.schema import work

SHA = "ab" * 32
WHITESPACE = " \t\n\r\x0b\x0c\u00a0\u2003\u3000"


def _key(prompt: str | None, *, env: str = "env", sha: str = SHA) -> str:
    return identity.content_key(image_sha256=sha, prompt=prompt, template_id=None, task_type="prompt",
                             environment=env)


def _settings(**fields: object) -> BackdropSettings:
    return BackdropSettings(**{"api_key": "sk-one", **fields})  # type: ignore[arg-type]


words = st.lists(st.text(st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs")), min_size=1, max_size=8),
                 min_size=1, max_size=5)
spaces = st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=4)


@given(words, st.data())
@settings(max_examples=300, deadline=None)
def test_prompts_differing_only_in_whitespace_are_one_picture(parts: list[str], data: st.DataObject) -> None:
    parts = [p for p in ("".join(p.split()) for p in parts) if p]
    assume(parts)
    lead, trail = data.draw(st.text(st.sampled_from(WHITESPACE), max_size=3)), data.draw(spaces | st.just(""))
    spaced = lead + "".join(p + data.draw(spaces) for p in parts[:-1]) + parts[-1] + trail
    plain = " ".join(parts)
    assert _key(spaced) == _key(plain) == _key(unicodedata.normalize("NFD", plain))
    assert normalise_prompt(spaced) == unicodedata.normalize("NFC", plain)


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_prompts_differing_otherwise_are_different_pictures(a: str, b: str) -> None:
    assume(normalise_prompt(a) != normalise_prompt(b))
    assert _key(a) != _key(b)


@given(st.text(st.characters(whitelist_categories=("Lu", "Ll")), min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_case_is_kept(prompt: str) -> None:
    assume(prompt.lower() != prompt.upper())
    assert _key(prompt.lower()) != _key(prompt.upper())


def test_the_review_s_four_rows() -> None:
    assert len({_key(p) for p in ("beach", "beach ", " beach", "beach\n", "beach\t\n", "beach\u00a0")}) == 1
    assert _key("Beach") != _key("beach") and _key("sunny  beach") == _key("sunny beach") != _key("sunnybeach")
    assert _key("caf\u00e9") == _key("cafe\u0301")  # NFC: one character or two, one prompt


def test_a_template_key_ignores_the_prompt_and_a_prompt_key_the_template() -> None:
    def key(prompt: str | None, template: str | None, task_type: str) -> str:
        return identity.content_key(image_sha256=SHA, prompt=prompt, template_id=template, task_type=task_type,
                                 environment="env")

    assert key("beach", "t1", "template") == key(None, "t1", "template") != key(None, "t2", "template")
    assert key("beach", "t1", "prompt") == key("beach", None, "prompt")


def test_what_is_sent_is_the_normalised_prompt(tmp_path: Path) -> None:
    csv = tmp_path / "rows.csv"
    csv.write_text('image_url,prompt\na.jpg,"  sunny \n beach "\na.jpg,sunny beach\nb.jpg,"   "\n')
    rows, _ = read_rows(str(csv))
    assert [r.prompt for r in rows] == ["sunny beach", "sunny beach", None]
    raw = InputRow(line=1, row_id="r", image_url="a.jpg", prompt="  sunny\t beach ", template_id=None)
    prepared = PreparedInput(sha256=SHA, path=str(tmp_path / "a.jpg"), content_type="image/jpeg", size=1, width=10,
                             height=10)
    items, rejected = group_rows([raw, rows[1]], {"a.jpg": prepared},
                                 lambda p, r, t: _key(r.prompt, sha=p.sha256))
    assert (len(items), items[0].prompt, rejected) == (1, "sunny beach", {})
    blank = InputRow(line=2, row_id="s", image_url="a.jpg", prompt=" \n\u3000", template_id=None)
    problem = check_prompt(blank)
    assert problem is not None and problem.report_code == "prompt_missing"


@pytest.mark.parametrize(("url", "service"), [
    ("https://yce-api-01.makeupar.com", "yce-api-01.makeupar.com"),
    ("https://yce-api-01.perfectcorp.com/", "yce-api-01.makeupar.com"),
    ("https://YCE-API-01.PerfectCorp.com.:443", "yce-api-01.makeupar.com"),
    ("http://localhost:8765", "loopback:8765"),
    ("http://127.0.0.1:8765/", "loopback:8765"),
    ("http://[::1]:8765", "loopback:8765"),
    ("https://Proxy.Example.com", "proxy.example.com:443"),
    ("https://proxy.example.com:8443/base/", "proxy.example.com:8443"),
])
def test_canonical_service(url: str, service: str) -> None:
    assert canonical_service(url) == service


def test_host_aliases_and_key_rotation_keep_the_environment() -> None:
    base = _settings()
    same = [_settings(api_url="https://yce-api-01.perfectcorp.com/"), _settings(api_key="sk-rotated"),
            _settings(api_url="https://yce-api-01.perfectcorp.com", api_key="sk-rotated")]
    assert {environment_id(s) for s in same} == {environment_id(base)}
    assert environment_id(_settings(api_url="http://localhost:8765", api_key="a")) == \
        environment_id(_settings(api_url="http://127.0.0.1:8765/", api_key="b"))


def test_accounts_and_servers_are_different_environments() -> None:
    ids = [environment_id(_settings()), environment_id(_settings(account="shop-eu")),
           environment_id(_settings(account="shop-us")),
           environment_id(_settings(api_url="http://localhost:8765")),
           environment_id(_settings(api_url="http://localhost:8766"))]
    assert len(set(ids)) == len(ids)


def test_both_slugs_are_one_environment_and_earlier_ids_are_all_known() -> None:
    """A picture paid under bg-replace-v2 (the old default) is paid under bg-replace too (issue 14)."""
    ids = {environment_id(_settings(feature=f)) for f in ("auto", "bg-replace", "bg-replace-v2")}
    assert ids == {environment_id(_settings())}
    known = account_environment_ids(_settings())
    assert len(known) == 5 and known[environment_id(_settings())] is None
    assert sorted(str(v) for v in known.values()) == ["None", "bg-replace", "bg-replace", "bg-replace-v2",
                                                      "bg-replace-v2"]
    assert slug_environment_id(_settings(), "bg-replace") != slug_environment_id(_settings(), "bg-replace-v2")


def test_key_id_names_the_key_without_revealing_it() -> None:
    one, rotated = key_id(_settings()), key_id(_settings(api_key="sk-rotated"))
    assert one and rotated and one != rotated and "sk-one" not in one and len(one) == 16
    assert key_id(_settings(api_url="https://yce-api-01.perfectcorp.com")) == one
    assert key_id(BackdropSettings(api_key=None)) is None


def test_host_aliases_share_one_limit_and_keys_do_not() -> None:
    vendor, alias = _settings(), _settings(api_url="https://yce-api-01.perfectcorp.com/")
    assert limiter_key_id(vendor) == limiter_key_id(alias) != limiter_key_id(_settings(api_key="sk-two"))
    assert shared_limiter(vendor) is shared_limiter(alias) is not shared_limiter(_settings(api_key="sk-two"))


def test_an_old_ledger_gets_the_key_id_and_feature_columns(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "old.db")
    columns = ", ".join(f"{c.name} {c.type.compile(dialect=sqlite_dialect())}" for c in work.columns
                        if c.name not in ("charged_at", "key_id", "feature"))
    old.execute(f"CREATE TABLE backdrop_work ({columns})")
    old.execute("INSERT INTO backdrop_work (id, content_key, attempt, status, units, created_at, updated_at) "
                "VALUES (1, 'k', 1, 'created', 0, '2026-11-01 10:00:00', '2026-11-01 10:00:00')")
    old.commit()
    old.close()
    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    assert ledger.latest("k").key_id is None  # type: ignore[union-attr]
    ledger.claim("k2", 1, key_id="0123456789abcdef", feature="bg-replace")
    assert ledger.latest("k2").key_id == "0123456789abcdef"  # type: ignore[union-attr]
    assert (ledger.latest("k").feature, ledger.latest("k2").feature) == (None, "bg-replace")  # type: ignore[union-attr]


# Every id below is persisted (ledger rows, the limiter's table) or shared between processes: a changed value would
# pay twice for what was paid or split one key's limit. The literals were computed with the code before
# `backdrop.identity` existed (tasks.runtime, backdrop.pacing, backdrop.store.migrate, backdrop.pipeline.steps).
# The per-slug ids (`slug_environment_id`, `legacy_environment_id`: bg-replace-v2, bg-replace) are the values
# `environment_id` and `legacy_environment_id` had before issue 14 for that slug: ledgers written then carry them.
PINNED = [
    # settings, environment_id, key_id, slug ids, legacy ids, limiter_key_id, process_limiter_key
    ({"api_key": "sk-one"}, "d7a0231c11b2f7a7", "3870a86ea0e19f5d", ("9265e5bbe460607a", "69a073174812b4c5"),
     ("53eeffc80792e064", "730a186bb769fc88"),
     "74f43e24f1efb1d97f203f0fa3f95c30", ("yce-api-01.makeupar.com", "456f1612bd25c6c8")),
    ({"api_key": "sk-two", "api_url": "http://127.0.0.1:8765/", "account": "shop", "feature": "bg-replace"},
     "9acfa8c04f3aa5e7", "456b9bf99dc1925a", ("1699d0bd3fbe305e", "525d4759b10167ff"),
     ("d593a071b3e2659a", "ff7d6bb95392e4bd"), "586f0954258c96166f5165966f179cba",
     ("loopback:8765", "5e31278545505db1")),
    ({"api_key": None}, "d7a0231c11b2f7a7", None, ("9265e5bbe460607a", "69a073174812b4c5"),
     ("ec77f2274859582c", "43b8b86e7da42062"), "d3b379ba0504919868b32a678595013c",
     ("yce-api-01.makeupar.com", "e3b0c44298fc1c14")),
]


@pytest.mark.parametrize(("fields", "env", "key", "slug", "legacy", "limiter", "process"), PINNED)
def test_every_identity_keeps_its_value(fields: dict[str, object], env: str, key: str | None,
                                        slug: tuple[str, str], legacy: tuple[str, str], limiter: str,
                                        process: tuple[str, str]) -> None:
    settings = BackdropSettings(**fields)  # type: ignore[arg-type]
    assert environment_id(settings) == env
    assert environment_id(settings.model_copy(update={"feature": "bg-replace-v2"})) == env
    assert key_id(settings) == key
    assert (slug_environment_id(settings, "bg-replace-v2"), slug_environment_id(settings, "bg-replace")) == slug
    assert (legacy_environment_id(settings, "bg-replace-v2"), legacy_environment_id(settings, "bg-replace")) == \
        legacy
    assert limiter_key_id(settings) == limiter
    assert process_limiter_key(settings) == process


@pytest.mark.parametrize(("fields", "limiter"), [
    ({"api_key": "sk-one", "egress_id": "nat-gw-1"}, "ip:6d2e65af493b1ac559e5f670ec4f867c"),
    ({"api_key": "sk-two", "api_url": "http://127.0.0.1:8765/", "egress_id": "build-host"},
     "ip:1ea2f375879091a461ac8063984a09a4"),
    ({"api_key": "sk-three", "api_url": "http://localhost:8765", "egress_id": "build-host"},
     "ip:1ea2f375879091a461ac8063984a09a4"),  # another key, another spelling of the server: one address budget
])
def test_the_egress_budget_keeps_its_value(fields: dict[str, object], limiter: str) -> None:
    """The database limiter's key of an address's budget (issue 14): computed when it was introduced."""
    assert identity.egress_limiter_key_id(BackdropSettings(**fields)) == limiter  # type: ignore[arg-type]


def test_the_content_key_keeps_its_value() -> None:
    assert identity.CACHE_VERSION == "v1"
    assert identity.content_key(image_sha256=SHA, prompt=" sunny  beach ", template_id=None, task_type="prompt",
                             environment="0123456789abcdef") == \
        "a1f66e7b5f25b3a4229a87d9b40b5b915bdb9a32273b0ad985d0bb7d89a2d4e1"
    assert identity.content_key(image_sha256=SHA, prompt="x", template_id="t1", task_type="template",
                             environment="0123456789abcdef") == \
        "69982a456db87325ba60ef3dff43bdd010a1dcb83935790dc1c8c304d0fec619"
