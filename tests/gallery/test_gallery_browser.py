"""The gallery in a real browser: headless Chromium opens a *copy* of the output folder.

The page's own script writes, on `load`, the number of cards and of <img> elements that decoded
(`naturalWidth > 0`) into `data-` attributes of <body>; `--dump-dom` returns the DOM after that.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from backdrop.gallery import write_gallery
from backdrop.report.table import write_report
from scripts import make_readme_images
from tests.gallery.helpers import (
    CANDIDATE_KEPT,
    EXPECTED_IMAGES,
    PENDING_IMAGES,
    make_batch,
    make_pending_batch,
)
from tests.support.chromium import chromium_path, dump_dom, screenshot

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(chromium_path() is None,
                       reason="needs headless Chromium: apt-get install chromium (Debian package)"),
]


@pytest.fixture(scope="module")
def copied_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gallery.html in a copy of the output folder (the original and the CSV folder are gone)."""
    root = tmp_path_factory.mktemp("browser")
    batch = make_batch(root / "run")
    write_gallery(batch.df, batch.summary, batch.out_dir)
    shutil.copytree(batch.out_dir, root / "copied" / "output")
    shutil.rmtree(root / "run")  # any path still pointing at the original would now break
    return root / "copied" / "output" / "gallery.html"


@pytest.fixture(scope="module")
def dom(copied_gallery: Path) -> str:
    """The copied gallery's DOM after `load` (one Chromium run for the tests that read it)."""
    return dump_dom(copied_gallery)


def _body(dom: str) -> dict[str, str]:
    tag = re.search(r"<body([^>]*)>", dom)
    assert tag is not None, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag.group(1)))


def test_chromium_shows_every_row_with_images_that_loaded(dom: str) -> None:
    body = _body(dom)
    assert body["data-cards"] == "6"
    assert body["data-images"] == str(EXPECTED_IMAGES)
    assert body["data-images-loaded"] == str(EXPECTED_IMAGES)


def test_chromium_renders_hostile_prompt_as_text(dom: str) -> None:
    assert "data-pwned" not in dom  # neither the <script> nor the onerror ran
    assert "&lt;script&gt;document.body.dataset.pwned=" in dom  # shown as text instead
    assert dom.count("<script>") == 1


def test_chromium_filter_from_the_url_hides_other_cards(copied_gallery: Path) -> None:
    dom = dump_dom(copied_gallery, fragment="failed")
    cards = re.findall(r'<article class="card" data-group="(\w+)"[^>]*?( hidden="")?>', dom)
    assert sorted((group, bool(hidden)) for group, hidden in cards) == [
        ("failed", False), ("failed", False), ("other", True), ("other", True),
        ("succeeded", True), ("succeeded", True)]
    assert '<span class="shown">2 of 6 rows</span>' in dom
    assert re.search(r'data-filter="failed" aria-pressed="true"', dom)


def test_chromium_loads_a_pending_rows_candidate_thumbnails(tmp_path: Path) -> None:
    """From a copy of the output folder: the input and the kept candidate result both decode."""
    batch = make_pending_batch(tmp_path / "run")
    write_gallery(batch.df, batch.summary, batch.out_dir)
    shutil.copytree(batch.out_dir, tmp_path / "copied")
    shutil.rmtree(tmp_path / "run")
    dom = dump_dom(tmp_path / "copied" / "gallery.html")
    body = _body(dom)
    assert body["data-cards"] == "3"
    assert body["data-images"] == body["data-images-loaded"] == str(PENDING_IMAGES)
    assert f'alt="result of candidate charge {CANDIDATE_KEPT} for waiting"' in dom
    assert "data-pwned" not in dom  # the hostile task id is text, not markup


def test_chromium_screenshot_of_the_gallery(copied_gallery: Path, tmp_path: Path) -> None:
    png = screenshot(copied_gallery, tmp_path / "gallery.png", width=1280, height=2000)
    with Image.open(png) as im:
        assert im.size == (1280, 2000)
        rgb = im.convert("RGB")
        # the page is not blank: the header's dark title and the cards' pictures are drawn
        colours = rgb.resize((64, 100)).getcolors(maxcolors=10_000) or []
    assert len(colours) > 50
    assert rgb.getpixel((0, 0)) == (245, 245, 242)  # the page background


def test_readme_script_renders_an_output_folder(tmp_path: Path) -> None:
    batch = make_batch(tmp_path / "run")
    write_report(batch.df, batch.summary, batch.out_dir)
    png = tmp_path / "docs" / "gallery.png"
    assert make_readme_images.main([str(batch.out_dir), "--png", str(png)]) == 0
    assert png.stat().st_size <= make_readme_images.MAX_BYTES
    with Image.open(png) as im:
        assert im.size == (1280, 1030)
    assert (batch.out_dir / "gallery.html").is_file()
    assert (batch.out_dir / "contact-sheet.png").is_file()


def test_readme_script_needs_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make_readme_images.main([str(tmp_path), "--png", str(tmp_path / "x.png")]) == 2
    assert "run `make demo` first" in capsys.readouterr().err
