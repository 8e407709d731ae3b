"""The README's Prefect UI screenshots script, without its slow run: its options, its batch, and its browser driver.

`scripts/make_ui_screenshots.py` starts a Prefect server, a worker and the sandbox (minutes), so the suite does not
run it; these check what it is made of: the batch it runs, and that `tests/support/devtools.py` waits for what a
page draws after it loads (as the Prefect UI does) before it takes the picture.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from scripts import make_ui_screenshots
from tests.support.chromium import chromium_path
from tests.support.devtools import browser

_LATE_PAGE = """<!doctype html><html><body style="margin:0;background:#fff">
<script>
  // like a single-page app: the content comes a while after load
  setTimeout(() => {
    const box = document.createElement("div");
    box.style = "width:200px;height:100px;background:rgb(200,30,30)";
    box.textContent = "loaded late";
    document.body.appendChild(box);
  }, 1500);
</script></body></html>"""


def test_the_script_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        make_ui_screenshots.main(["--help"])
    assert exited.value.code == 0
    assert "--docs" in capsys.readouterr().out


def test_its_batch_is_the_demo_with_one_row_the_engine_refuses(tmp_path: Path) -> None:
    path = make_ui_screenshots._batch(tmp_path / "batch", 3)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert [r["prompt"].endswith(make_ui_screenshots.REFUSED) for r in rows] == [False, False, False, True]
    for row in rows:
        with Image.open(path.parent / row["image_url"]) as im:
            assert im.width > 0


@pytest.mark.chromium
@pytest.mark.skipif(chromium_path() is None, reason="needs headless Chromium: apt-get install chromium")
def test_the_browser_waits_for_content_drawn_after_load(tmp_path: Path) -> None:
    page = tmp_path / "late.html"
    page.write_text(_LATE_PAGE, encoding="utf-8")
    with browser(400, 300) as tab:
        tab.open(page.as_uri(), ["loaded late"], timeout=30, still=10)
        png = tab.screenshot(tmp_path / "late.png")
    with Image.open(png) as im:
        assert im.size == (400, 300)
        assert im.convert("RGB").getpixel((150, 80)) == (200, 30, 30)  # the late box is in the picture
