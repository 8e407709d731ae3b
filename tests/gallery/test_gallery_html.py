"""gallery.html and its thumbnails, read back from disk."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
from PIL import Image

from backdrop import gallery as gallery_mod
from backdrop.gallery import write_gallery
from backdrop.gallery.html import EAGER_CARDS, money
from backdrop.report.table import build_report, summarize
from tests.gallery.helpers import (
    EXPECTED_IMAGES,
    GREEN,
    HOSTILE_ID,
    HOSTILE_PROMPT,
    Batch,
    make_batch,
)


class _Page(HTMLParser):
    """The parts of the page the tests look at: cards, images, scripts, stats."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str | None]] = []
        self.imgs: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.scripts: list[str] = []
        self.stats: dict[str, str] = {}
        self._stat: str | None = None
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "article":
            self.cards.append(a)
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "a":
            self.links.append(a.get("href") or "")
        elif tag == "script":
            self._in = "script"
        elif tag == "div" and a.get("data-stat"):
            self._stat = a["data-stat"]
        elif tag == "dd" and self._stat:
            self._in = "dd"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "dd"):
            self._in = None
        if tag == "dd":
            self._stat = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "dd" and self._stat:
            self.stats[self._stat] = self.stats.get(self._stat, "") + data


def _page(batch: Batch) -> tuple[str, _Page]:
    files = write_gallery(batch.df, batch.summary, batch.out_dir)
    text = files.html.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def _card_html(text: str, row_id: str) -> str:
    cards = re.findall(r"<article .*?</article>", text, flags=re.S)
    return next(c for c in cards if f"<h2>{row_id}</h2>" in c)


def test_gallery_has_one_card_per_row_with_its_status(batch: Batch) -> None:
    _, page = _page(batch)
    assert [(c["data-status"], c["data-group"]) for c in page.cards] == [
        ("succeeded", "succeeded"), ("succeeded", "succeeded"), ("failed", "failed"),
        ("failed", "failed"), ("skipped", "other"), ("pending_reconcile", "other")]
    assert len(page.imgs) == EXPECTED_IMAGES


def test_gallery_header_shows_the_run_summary(batch: Batch) -> None:
    _, page = _page(batch)
    assert page.stats == {"rows": "6", "succeeded": "2", "failed": "2", "skipped": "1",
                          "pending": "1", "units": "8", "cost": "0.44 USD"}


def test_gallery_filter_buttons_count_each_group(batch: Batch) -> None:
    text, _ = _page(batch)
    buttons = dict(re.findall(r'data-filter="(\w+)"[^>]*>\w+ <span>(\d+)</span>', text))
    assert buttons == {"all": "6", "succeeded": "2", "failed": "2", "other": "2"}


def test_gallery_escapes_hostile_prompt_and_row_id(batch: Batch) -> None:
    text, page = _page(batch)
    assert len(page.scripts) == 1 and "pwned" not in page.scripts[0]  # only the page's own script
    assert "<script>document.body" not in text and 'onerror="document' not in text
    assert "&lt;script&gt;document.body.dataset.pwned=&quot;1&quot;&lt;/script&gt;" in text
    assert "<h2>sku-&lt;b&gt;7&lt;/b&gt;&amp;&quot;x&quot;</h2>" in text
    assert HOSTILE_PROMPT not in text and HOSTILE_ID not in text


def test_gallery_script_is_allowed_by_its_csp_hash(batch: Batch) -> None:
    text, page = _page(batch)
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    assert csp is not None
    policy = html.unescape(csp.group(1))
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy


def test_gallery_shows_failure_codes_and_messages(batch: Batch) -> None:
    text, _ = _page(batch)
    broken = _card_html(text, "broken")
    assert ("<code>input_not_found</code> at preflight: "
            "no such file next to the CSV: missing.jpg") in broken
    assert '<div class="ph">no picture</div>' in broken
    assert '<div class="ph">no result</div>' in broken
    engine = _card_html(text, "engine")
    assert ("<code>error_inference_failed</code> at task: "
            "the engine gave up &lt;on this one&gt;") in engine
    assert '<p class="error">' in engine
    late = _card_html(text, "late")  # not a failure: the same box, in grey
    assert '<p class="error st-other-box"><code>poll_deadline_exceeded</code>' in late
    assert "<code>tpl_studio_01</code>" in late


def test_gallery_shows_units_cost_and_passed_through_columns(batch: Batch) -> None:
    text, _ = _page(batch)
    mug = _card_html(text, "mug")
    assert "<dt>units</dt><dd>4</dd>" in mug and "<dt>cost</dt><dd>0.22 USD</dd>" in mug
    assert "<dt>sku</dt><dd>BD-1001</dd>" in mug
    assert "<dt>cost</dt><dd>0.00 USD</dd>" in _card_html(text, "broken")


def test_gallery_remote_input_is_a_link_not_a_thumbnail(batch: Batch) -> None:
    text, page = _page(batch)
    remote = _card_html(text, "remote")
    assert "<img" not in remote and '<div class="ph">remote picture</div>' in remote
    assert '<div class="ph">not attempted</div>' in remote
    assert "https://cdn.example.com/p.jpg?a=1&b=2" in page.links


def test_gallery_images_are_relative_thumbnails_under_240px(batch: Batch) -> None:
    _, page = _page(batch)
    for img in page.imgs:
        src = unquote(img["src"] or "")
        assert src.startswith(".backdrop/thumbs/") and not Path(src).is_absolute()
        with Image.open(batch.out_dir / src) as im:
            assert max(im.size) == 240 and im.format == "JPEG"
            assert (str(im.width), str(im.height)) == (img["width"], img["height"])


def test_gallery_input_thumbnail_comes_from_the_staged_copy(batch: Batch) -> None:
    _, page = _page(batch)
    mug_input = page.imgs[0]["src"] or ""
    assert mug_input == f".backdrop/thumbs/{batch.staged_sha[:40]}-240.jpg"
    with Image.open(batch.out_dir / mug_input) as im:
        r, g, b = im.convert("RGB").getpixel((4, 4))  # type: ignore[misc]
    # green: the staged copy, not the red mug.jpg next to the CSV
    assert abs(r - GREEN[0]) < 20 and abs(g - GREEN[1]) < 20 and abs(b - GREEN[2]) < 20
    assert f".backdrop/inputs/{batch.staged_sha}.jpg" in page.links  # the bytes sent, full size


def test_gallery_identical_pictures_share_one_thumbnail(batch: Batch) -> None:
    _, page = _page(batch)
    srcs = [img["src"] for img in page.imgs]
    assert srcs.count(f".backdrop/thumbs/{batch.staged_sha[:40]}-240.jpg") == 3  # mug, engine, late
    assert len(list((batch.out_dir / ".backdrop" / "thumbs").glob("*.jpg"))) == len(set(srcs)) == 4


def test_gallery_unreadable_output_gets_a_placeholder(batch: Batch) -> None:
    (batch.out_dir / "hostile.jpg").write_text("not a picture")
    text, page = _page(batch)
    assert len(page.imgs) == EXPECTED_IMAGES - 1
    assert '<div class="ph">not a readable picture</div>' in text


def test_gallery_lazy_loads_cards_after_the_first_screens(tmp_path: Path) -> None:
    many = make_batch(tmp_path, extra_rows=EAGER_CARDS)
    _, page = _page(many)
    cards = len(page.cards)
    assert cards == 6 + EAGER_CARDS
    lazy = [img.get("loading") == "lazy" for img in page.imgs]
    # each extra row has two pictures; the 6 fixed rows have 6; lazy starts at card EAGER_CARDS
    eager_imgs = 6 + 2 * (EAGER_CARDS - 6)
    assert lazy == [False] * eager_imgs + [True] * (len(page.imgs) - eager_imgs)


def test_gallery_of_an_empty_report_says_so(tmp_path: Path) -> None:
    df = build_report([])
    summary = summarize(df, unit_price=0.055, currency="USD", units_per_task=4)
    files = write_gallery(df, summary, tmp_path / "out")
    text = files.html.read_text(encoding="utf-8")
    assert "No rows in this report." in text and "<article" not in text
    assert (files.pairs_shown, files.pairs_left_out) == (0, 0)


def test_gallery_reads_a_report_back_from_parquet(batch: Batch) -> None:
    path = batch.out_dir / "report.parquet"
    batch.df.to_parquet(path, index=False)
    batch.df = pd.read_parquet(path)  # missing values come back as NaN/None/NA
    text, page = _page(batch)
    assert len(page.cards) == 6 and len(page.imgs) == EXPECTED_IMAGES
    visible = re.sub(r"<style>.*?</style>|<script>.*?</script>", "", text, flags=re.S)
    assert "nan" not in visible.lower()


def test_write_gallery_keeps_the_old_files_when_rendering_fails(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_gallery(batch.df, batch.summary, batch.out_dir)
    before = first.html.read_bytes()

    def broken(*args: object) -> tuple[int, int]:
        raise OSError("disk full")

    monkeypatch.setattr(gallery_mod, "render_contact_sheet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_gallery(batch.df.head(1), batch.summary, batch.out_dir)
    assert first.html.read_bytes() == before
    hidden = sorted(p.name for p in batch.out_dir.iterdir() if p.name.startswith("."))
    assert hidden == [".backdrop"]  # no temporary files left behind


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (3.08, "USD", "3.08 USD"),
        (0.055, "USD", "0.055 USD"),  # a unit price needs its third decimal
        (1234.5, "EUR", "1,234.50 EUR"),
        (0.0, "", "0.00"),
    ],
)
def test_money_formats_amounts(amount: float, currency: str, text: str) -> None:
    assert money(amount, currency) == text


def test_gallery_of_a_dry_run_says_what_it_would_cost(batch: Batch) -> None:
    batch.summary.update(dry_run=True, estimated_units=8, estimated_cost=0.44)
    text, _ = _page(batch)
    assert "<h1>Backdrop dry run</h1>" in text
    assert "would cost 8 units (0.44 USD)" in text
