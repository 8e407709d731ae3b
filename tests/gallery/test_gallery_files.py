"""The gallery's files are replaced atomically: readable by others (0644), both or neither, no temporaries left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import backdrop.gallery as gallery
from backdrop.gallery import write_gallery
from tests.gallery.helpers import Batch


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_pages_and_thumbnails_are_0644_and_no_temporary_is_left(batch: Batch) -> None:
    files = write_gallery(batch.df, batch.summary, batch.out_dir)
    thumbs = list((batch.out_dir / ".backdrop" / "thumbs").iterdir())
    assert thumbs and all(_mode(p) == 0o644 for p in [files.html, files.contact_sheet, *thumbs])
    leftovers = [p.name for p in [*batch.out_dir.iterdir(), *thumbs] if p.name.startswith(".") and p.is_file()]
    assert leftovers == []


def test_a_contact_sheet_that_fails_leaves_the_old_page_and_no_temporary(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    (batch.out_dir / "gallery.html").write_text("old page")

    def broken(*args: object) -> tuple[int, int]:
        raise OSError("disk full")

    monkeypatch.setattr(gallery, "render_contact_sheet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_gallery(batch.df, batch.summary, batch.out_dir)
    assert (batch.out_dir / "gallery.html").read_text() == "old page"
    assert not (batch.out_dir / "contact-sheet.png").exists()
    assert [p.name for p in batch.out_dir.iterdir() if p.name.startswith(".") and p.is_file()] == []
