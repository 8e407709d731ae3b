"""contact-sheet.png: before/after pairs in a grid, for a quick look in a chat or the Prefect UI.

Built from the gallery's thumbnails (already small), one at a time, with Pillow only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from backdrop.gallery.cards import Card
from backdrop.gallery.html import money
from backdrop.gallery.pictures import Picture

__all__ = ["MAX_PAIRS", "PAIRS_PER_ROW", "render_contact_sheet", "sheet_size"]

MAX_PAIRS = 60
PAIRS_PER_ROW = 4
TILE = 200  # each picture is fitted into a TILE x TILE square
_INNER = 4  # between the two tiles of a pair
_GAP = 16  # between pairs, both ways
_MARGIN = 16
_HEADER = 36
_CAPTION = 28
_FOOTER = 28

_BG, _TILE_BG, _INK, _MUTE = (245, 245, 242), (232, 232, 228), (35, 37, 42), (107, 111, 118)
_STATUS_INK = {
    "succeeded": (31, 122, 77), "failed": (179, 38, 30), "pending_reconcile": (154, 103, 0),
}


def sheet_size(pairs: int, left_out: int = 0) -> tuple[int, int]:
    """Width and height of a sheet of `pairs` pairs (plus a footer line if rows were left out)."""
    cols = max(1, min(PAIRS_PER_ROW, pairs))
    rows = max(1, -(-pairs // PAIRS_PER_ROW))
    pair_w = 2 * TILE + _INNER
    width = 2 * _MARGIN + cols * pair_w + (cols - 1) * _GAP
    height = 2 * _MARGIN + _HEADER + rows * (TILE + _CAPTION) + (rows - 1) * _GAP
    return width, height + (_FOOTER if left_out else 0)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _tile(
    sheet: Image.Image, draw: ImageDraw.ImageDraw, pic: Picture, x: int, y: int, font: Any
) -> None:
    draw.rectangle((x, y, x + TILE - 1, y + TILE - 1), fill=_TILE_BG)
    if pic.thumb is not None:
        try:
            with Image.open(pic.thumb) as im:
                im.draft("RGB", (TILE, TILE))
                small = im.convert("RGB")
            small.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
            sheet.paste(small, (x + (TILE - small.width) // 2, y + (TILE - small.height) // 2))
            return
        except OSError:
            pass  # the thumbnail vanished since the gallery listed it: show the placeholder
    text = _fit_text(draw, pic.missing, font, TILE - 16)
    draw.text((x + TILE // 2, y + TILE // 2), text, fill=_MUTE, font=font, anchor="mm")


def _after(card: Card) -> Picture:
    """The right tile: the result, or for a pending row with candidate charges, where to settle it."""
    if not card.candidates:
        return card.after
    n = len(card.candidates) + card.candidates_left_out
    return Picture(missing=f"{n} candidate{'s' if n != 1 else ''}: see gallery")


def render_contact_sheet(
    cards: Sequence[Card], summary: dict[str, Any], dest: str | Path
) -> tuple[int, int]:
    """Draw up to MAX_PAIRS pairs of `cards` into the PNG `dest`; return (drawn, left out)."""
    shown, left_out = list(cards[:MAX_PAIRS]), max(0, len(cards) - MAX_PAIRS)
    width, height = sheet_size(len(shown), left_out)
    sheet = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(sheet)
    title, small = _font(16), _font(13)
    cost = money(float(summary.get("cost", 0) or 0), str(summary.get("currency", "")))
    head = (f"Backdrop · {summary.get('rows', len(cards))} rows · "
            f"{summary.get('succeeded', 0)} succeeded · "
            f"{summary.get('failed', 0)} failed · {summary.get('units_charged', 0)} units · "
            f"{cost}")
    draw.text((_MARGIN, _MARGIN + _HEADER // 2 - 4),
              _fit_text(draw, head, title, width - 2 * _MARGIN), fill=_INK, font=title, anchor="lm")
    if not shown:
        draw.text((_MARGIN, _MARGIN + _HEADER + TILE // 2), "no rows", fill=_MUTE, font=small,
                  anchor="lm")
    for i, card in enumerate(shown):
        col, row = i % PAIRS_PER_ROW, i // PAIRS_PER_ROW
        x = _MARGIN + col * (2 * TILE + _INNER + _GAP)
        y = _MARGIN + _HEADER + row * (TILE + _CAPTION + _GAP)
        _tile(sheet, draw, card.before, x, y, small)
        _tile(sheet, draw, _after(card), x + TILE + _INNER, y, small)
        status = card.status.replace("_", " ")
        status_w = int(draw.textlength(status, font=small))
        cy = y + TILE + _CAPTION // 2
        draw.text((x, cy), _fit_text(draw, card.row_id, small, 2 * TILE - status_w - 16),
                  fill=_INK, font=small, anchor="lm")
        draw.text((x + 2 * TILE + _INNER, cy), status, fill=_STATUS_INK.get(card.status, _MUTE),
                  font=small, anchor="rm")
    info = PngInfo()
    info.add_text("Title", head)
    if left_out:
        footer = f"+ {left_out} more rows not shown here: open gallery.html for all {len(cards)}"
        draw.text((_MARGIN, height - _MARGIN - _FOOTER // 2), footer, fill=_MUTE, font=small,
                  anchor="lm")
        info.add_text("Description", footer)
    sheet.save(dest, "PNG", optimize=True, pnginfo=info)
    return len(shown), left_out
