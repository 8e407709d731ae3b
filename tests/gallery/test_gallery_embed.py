"""The pictures inside the Prefect artifact: small, escaped, and only rows that did not succeed."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from backdrop.gallery.cards import Card
from backdrop.gallery.embed import MAX_FAILED, pictures_markdown
from backdrop.gallery.pictures import Picture
from backdrop.report.inline import data_uri


def _noisy(path: Path, size: tuple[int, int]) -> Path:
    Image.frombytes("RGB", size, bytes((i * 7919) % 251 for i in range(size[0] * size[1] * 3))).save(path)
    return path


def test_a_large_sheet_is_downscaled_to_fit_its_budget(tmp_path: Path) -> None:
    sheet = _noisy(tmp_path / "sheet.png", (2400, 1600))
    sizes = {}
    for budget in (60_000, 120_000):
        uri = data_uri(sheet, 960, budget=budget)
        assert uri is not None and uri.startswith("data:image/jpeg;base64,")
        raw = base64.b64decode(uri.split(",", 1)[1])
        with Image.open(io.BytesIO(raw)) as im:
            assert im.format == "JPEG" and max(im.size) == 960
        assert len(raw) <= budget
        sizes[budget] = len(raw)
    assert sizes[60_000] < sizes[120_000]  # a tighter budget lowers the quality


def test_not_a_picture_embeds_nothing(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"not a picture")
    assert data_uri(tmp_path / "x.png", 96, budget=8_000) is None


def _card(n: int, status: str, thumb: Path | None, message: str = "boom") -> Card:
    return Card(line=n, row_id=f"row|{n}", status=status, input_label="x", before=Picture(thumb=thumb),
                after=Picture(), error_code="error_inference", error_message=message)


def test_only_rows_that_did_not_succeed_are_listed_escaped_and_capped(tmp_path: Path) -> None:
    thumb = _noisy(tmp_path / "t.jpg", (240, 160))
    cards = [_card(0, "succeeded", thumb), _card(1, "skipped", thumb),
             *(_card(n, "failed", thumb, message="a | b `c`\nd") for n in range(2, 2 + MAX_FAILED + 3))]
    text = pictures_markdown(cards, None, tmp_path / "gallery.html")
    table = [line for line in text.splitlines() if line.startswith("| ![")]
    assert len(table) == MAX_FAILED and "row\\|2" in table[0] and "a \\| b 'c' d" in table[0]
    assert "3 more rows did not succeed" in text and "| row\\|0 |" not in text and "| row\\|1 |" not in text
    assert f"    {tmp_path / 'gallery.html'}" in text and "file://" not in text
