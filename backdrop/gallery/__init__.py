"""What people look at after a batch: `gallery.html` and `contact-sheet.png` in the output folder.

    write_gallery(df, summary, out_dir)
      -> out_dir/.backdrop/thumbs/<content sha256>-240.jpg   one small JPEG per distinct picture
      -> out_dir/gallery.html                                 every row, filters, no network needed
      -> out_dir/contact-sheet.png                            up to 60 before/after pairs
      -> GalleryFiles.artifact_markdown                       the sheet and failed rows inline, for Prefect

Thumbnails are files referenced by relative paths rather than data URIs: the page stays small
(a 2,000-row batch would otherwise be a ~40 MB HTML file the browser must parse before it shows
anything), rows past the first screen load lazily, identical pictures share one file, a re-run
reuses them, and the contact sheet is drawn from the same files. Copying the output folder keeps
the page working, since every path is relative to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from backdrop.files import atomic_path
from backdrop.gallery.cards import build_cards
from backdrop.gallery.embed import pictures_markdown
from backdrop.gallery.html import render_html
from backdrop.gallery.sheet import render_contact_sheet

__all__ = ["GalleryFiles", "write_gallery"]


@dataclass(frozen=True)
class GalleryFiles:
    """Where the gallery was written, and how much of the batch the contact sheet shows."""

    html: Path
    contact_sheet: Path
    pairs_shown: int
    pairs_left_out: int
    #: the contact sheet and the failed rows as inline images, for the run's markdown artifact
    artifact_markdown: str = ""

    def as_dict(self) -> dict[str, str]:
        """Paths as strings, keyed like `write_report`'s result (for summary["files"])."""
        return {"gallery": str(self.html), "contact_sheet": str(self.contact_sheet)}


def write_gallery(df: pd.DataFrame, summary: dict[str, Any], out_dir: Path) -> GalleryFiles:
    """Write `gallery.html` and `contact-sheet.png` for a report into `out_dir`, atomically.

    Args:
        df: The report (`backdrop.report.table.build_report`, or `report.parquet` read back).
        summary: The run summary (`backdrop.report.table.summarize` plus the flow's keys; `csv` is used
            to find local input pictures that were not staged).
        out_dir: The batch's output folder; the pages refer to pictures relative to it.

    Returns:
        The paths written and how many rows the contact sheet shows and leaves out.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cards = list(build_cards(df, out_dir, str(summary.get("csv") or "")))
    html_path, sheet_path = out_dir / "gallery.html", out_dir / "contact-sheet.png"
    # Both or neither (nothing is renamed if either fails to render); the page is renamed first, then the sheet.
    # 0o644: mkstemp makes 0600, and the pages are for people to open and share.
    with atomic_path(sheet_path, mode=0o644) as tmp_sheet, atomic_path(html_path, mode=0o644) as tmp_html:
        tmp_html.write_text(render_html(cards, summary, out_dir), encoding="utf-8")
        shown, left_out = render_contact_sheet(cards, summary, tmp_sheet)
    return GalleryFiles(html_path, sheet_path, shown, left_out,
                        artifact_markdown=pictures_markdown(cards, sheet_path, html_path))
