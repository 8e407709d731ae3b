"""Pictures inside a Prefect markdown artifact: the contact sheet and the failed rows, as small inline images.

A browser refuses `file://` links from the Prefect UI, but it shows an image embedded in the markdown as a
`data:` URI. So the batch's summary artifact carries the contact sheet (downscaled to `SHEET_WIDTH`, JPEG) and a
thumbnail of each row that did not succeed (`THUMB_SIDE`) beside its error, at most `MAX_FAILED` rows; and the
paths of gallery.html and the full contact sheet are shown as text a user can copy. Artifacts stay small: about
`SHEET_BUDGET` bytes for the sheet (quality lowered until it fits) and a few KB per thumbnail.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from backdrop.gallery.cards import Card
from backdrop.report.inline import data_uri

__all__ = ["MAX_FAILED", "SHEET_BUDGET", "pictures_markdown"]

SHEET_WIDTH = 960
SHEET_BUDGET = 120_000  # bytes of JPEG before base64
THUMB_SIDE = 96
MAX_FAILED = 12


def _cell(text: str, limit: int = 160) -> str:
    """Text safe inside a markdown table cell."""
    flat = " ".join(text.split())[:limit]
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def pictures_markdown(cards: Iterable[Card], sheet: Path | None, html: Path | None) -> str:
    """The artifact's pictures section: the contact sheet, the failed rows with thumbnails, the paths to copy."""
    lines = ["## Pictures", ""]
    if sheet is not None and (uri := data_uri(sheet, SHEET_WIDTH, budget=SHEET_BUDGET)):
        lines += [f"![contact sheet: inputs and results]({uri})", ""]
    bad = [c for c in cards if c.status not in ("succeeded", "skipped")]
    if bad:
        lines += ["### Rows that did not succeed", "", "| input | row | status | code | message |",
                  "|---|---|---|---|---|"]
        for card in bad[:MAX_FAILED]:
            thumb = card.before.thumb
            uri = data_uri(thumb, THUMB_SIDE, budget=8_000) if thumb else None
            picture = f"![{_cell(card.row_id, 40)}]({uri})" if uri else _cell(card.before.missing, 40)
            lines.append(f"| {picture} | {_cell(card.row_id, 60)} | {card.status} | {_cell(card.error_code, 60)} "
                         f"| {_cell(card.error_message)} |")
        if len(bad) > MAX_FAILED:
            lines.append(f"\n{len(bad) - MAX_FAILED} more rows did not succeed: report.csv and the gallery list "
                         "every one.")
        lines.append("")
    if html is not None:
        lines += ["Open the gallery (every row, before and after) from a file browser or a terminal:", "",
                  f"    {html}", ""]
        if sheet is not None:
            lines += ["The full-size contact sheet:", "", f"    {sheet}", ""]
    return "\n".join(lines)
