"""contact-sheet.png: its size for N pairs, what each tile shows, and the left-out caption."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from backdrop.gallery import write_gallery
from backdrop.gallery.sheet import MAX_PAIRS, sheet_size
from tests.gallery.helpers import GREEN, ORANGE, Batch, make_batch

_BG, _TILE_BG = (245, 245, 242), (232, 232, 228)


def _near(pixel: tuple[int, ...], colour: tuple[int, ...], tol: int = 24) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour, strict=False))


@pytest.mark.parametrize(
    ("pairs", "left_out", "size"),
    [
        # 16 margin + 36 header + 228 per row (200 tile + 28 caption) + 16 between rows + 16 margin
        (1, 0, (436, 296)),  # one pair: the sheet is one pair wide
        (4, 0, (1696, 296)),  # a full row: 4 x (200+4+200) + 3 x 16 + 2 x 16
        (6, 0, (1696, 540)),
        (60, 5, (1696, 3740)),  # 15 rows, plus a 28 px footer line
        (0, 0, (436, 296)),
    ],
)
def test_sheet_size_for_n_pairs(pairs: int, left_out: int, size: tuple[int, int]) -> None:
    assert sheet_size(pairs, left_out) == size


def test_contact_sheet_draws_each_pair_from_its_thumbnails(batch: Batch) -> None:
    files = write_gallery(batch.df, batch.summary, batch.out_dir)
    assert (files.pairs_shown, files.pairs_left_out) == (6, 0)
    with Image.open(files.contact_sheet) as im:
        assert im.format == "PNG" and im.size == (1696, 540)
        sheet = im.convert("RGB")
    top = 16 + 36
    assert _near(sheet.getpixel((16 + 10, top + 40)), GREEN)  # mug's input: the staged copy
    assert _near(sheet.getpixel((16 + 204 + 10, top + 40)), ORANGE)  # mug's output
    broken_x = 16 + 2 * (404 + 16)  # third pair: nothing to show on either side
    assert sheet.getpixel((broken_x + 4, top + 4)) == _TILE_BG
    assert sheet.getpixel((broken_x + 204 + 4, top + 4)) == _TILE_BG


def test_contact_sheet_caption_names_the_row_and_its_status(batch: Batch) -> None:
    files = write_gallery(batch.df, batch.summary, batch.out_dir)
    with Image.open(files.contact_sheet) as im:
        sheet = im.convert("RGB")
    caption = sheet.crop((16, 16 + 36 + 200, 16 + 404, 16 + 36 + 228))
    colours = {c for _, c in caption.getcolors(maxcolors=100_000) or []}
    assert any(c[1] > c[0] + 40 and c[1] > c[2] + 20 for c in colours)  # the green "succeeded"
    assert any(max(c) < 90 for c in colours)  # the dark row id


def test_contact_sheet_caps_pairs_and_says_how_many_were_left_out(tmp_path: Path) -> None:
    many = make_batch(tmp_path, extra_rows=MAX_PAIRS)  # 6 + 60 rows
    files = write_gallery(many.df, many.summary, many.out_dir)
    assert (files.pairs_shown, files.pairs_left_out) == (60, 6)
    with Image.open(files.contact_sheet) as im:
        assert im.size == (1696, 3740)
        text = dict(im.text)  # type: ignore[attr-defined]
        footer = im.convert("RGB").crop((16, 3740 - 16 - 28, 1696 - 16, 3740 - 16))
    ink = [c for _, c in footer.getcolors(maxcolors=100_000) or [] if c != _BG]
    assert ink, "the left-out caption is not drawn"
    assert text["Description"] == "+ 6 more rows not shown here: open gallery.html for all 66"
    assert text["Title"] == "Backdrop · 66 rows · 62 succeeded · 2 failed · 248 units · 13.64 USD"
    assert files.html.read_text().count("<article ") == 66  # the page itself shows every row


def test_contact_sheet_without_left_out_rows_has_no_footer(batch: Batch) -> None:
    files = write_gallery(batch.df, batch.summary, batch.out_dir)
    with Image.open(files.contact_sheet) as im:
        assert "Description" not in im.text  # type: ignore[attr-defined]
        assert im.text["Title"] == (  # type: ignore[attr-defined]
            "Backdrop · 6 rows · 2 succeeded · 2 failed · 8 units · 0.44 USD")
