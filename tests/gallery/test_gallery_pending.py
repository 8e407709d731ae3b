"""Pending rows in the gallery: the input beside each candidate charge's result, and the commands."""

from __future__ import annotations

import html
import re
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import unquote

import pandas as pd
import pytest
from PIL import Image

from backdrop.gallery import write_gallery
from backdrop.gallery.cards import MAX_CANDIDATES, PendingNote, parse_pending_note
from backdrop.pipeline.lifecycle import RowLifecycle
from tests.gallery.helpers import (
    CANDIDATE_GONE,
    CANDIDATE_KEPT,
    GREEN,
    HOSTILE_TASK,
    PENDING_IMAGES,
    PENDING_KEY,
    PURPLE,
    Batch,
    make_pending_batch,
    pending_note,
)

_TILE_BG = (232, 232, 228)


@pytest.fixture
def pending(tmp_path: Path) -> Batch:
    return make_pending_batch(tmp_path)


def _page(batch: Batch) -> str:
    return write_gallery(batch.df, batch.summary, batch.out_dir).html.read_text(encoding="utf-8")


def _card(text: str, row_id: str) -> str:
    cards = re.findall(r"<article .*?</article>", text, flags=re.S)
    return next(c for c in cards if f"<h2>{row_id}</h2>" in c)


def _near(pixel: Any, colour: tuple[int, ...], tol: int = 24) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour, strict=False))


# --- the note ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("note", "parsed"),
    [
        (pending_note(PENDING_KEY, "t-1", "t-2"), PendingNote(PENDING_KEY, ("t-1", "t-2"))),
        (pending_note(PENDING_KEY, "t-1"), PendingNote(PENDING_KEY, ("t-1",))),
        (pending_note(PENDING_KEY, "t-1", "t-2", "t-1"), PendingNote(PENDING_KEY, ("t-1", "t-2"))),
        (pending_note(PENDING_KEY, "a;b", "c`d`"), PendingNote(PENDING_KEY, ("a;b", "c`d`"))),
        # an id that mimics the note's own tail cannot move the key: the last tail counts
        (pending_note(PENDING_KEY, "x;", "settle", "it", "with", "`backdrop", "reconcile",
                      "ffffffffffff"), PendingNote(PENDING_KEY, ("x;", "settle", "it", "with",
                                                                "`backdrop", "reconcile",
                                                                "ffffffffffff"))),
        (pending_note(PENDING_KEY), None),  # no candidates named
        (pending_note(PENDING_KEY, " "), None),
        (pending_note("$(rm -rf ~)", "t-1"), None),  # the key is hex, or it is no command of ours
        (pending_note("0123456789AB", "t-1"), None),
        ("candidate charges: t-1 t-2", None),  # the ledger's message alone says how to settle nothing
        ("reused from an earlier run", None),
        ("", None),
    ],
)
def test_parse_pending_note(note: str, parsed: PendingNote | None) -> None:
    assert parse_pending_note(note) == parsed


def test_parse_pending_note_reads_what_the_lifecycle_writes() -> None:
    """The contract with backdrop.pipeline.lifecycle: the note of a pending row with candidate charges."""
    key = "9f" * 32
    entry = SimpleNamespace(error_message="candidate charges: task-1 task-2", content_key=key)
    result = RowLifecycle._pending(cast(Any, None), cast(Any, entry))
    assert parse_pending_note(result.note or "") == PendingNote(key[:12], ("task-1", "task-2"))


def test_pending_note_commands_are_safe_to_paste_in_a_shell() -> None:
    note = PendingNote(PENDING_KEY, ("task-1", "$(touch x)'"))
    assert note.settle_with("task-1") == f"backdrop reconcile {PENDING_KEY} --task task-1"
    assert note.settle_with("$(touch x)'") == (
        f"backdrop reconcile {PENDING_KEY} --task '$(touch x)'\"'\"''")
    assert note.not_created == f"backdrop reconcile {PENDING_KEY} --not-created"


# --- the page ---------------------------------------------------------------------------------


def test_pending_row_shows_its_input_beside_each_candidate_with_the_commands(pending: Batch) -> None:
    text = _page(pending)
    waiting = _card(text, "waiting")
    imgs = re.findall(r"<img [^>]*>", waiting)
    assert len(imgs) == 2  # the input and the one kept candidate result
    assert f'alt="result of candidate charge {CANDIDATE_KEPT} for waiting"' in imgs[1]
    # both candidates, labelled with their task ids, in the order the note gives
    captions = re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", waiting)
    assert captions == ["before · mug.jpg", f"candidate · {CANDIDATE_KEPT}",
                        f"candidate · {CANDIDATE_GONE}"]
    gone = waiting.split(f"candidate · {CANDIDATE_GONE}")[0].rsplit("<figure>", 1)[1]
    assert '<div class="ph">picture not available</div>' in gone
    # one command per candidate, and the one for none of them
    assert re.findall(r'<code class="cmd">(.*?)</code>', waiting) == [
        f"backdrop reconcile {PENDING_KEY} --task {CANDIDATE_KEPT}",
        f"backdrop reconcile {PENDING_KEY} --task {CANDIDATE_GONE}",
        f"backdrop reconcile {PENDING_KEY} --not-created",
    ]
    assert "no result" not in waiting  # the candidates take the result's place


def test_candidate_thumbnail_is_small_relative_and_links_the_kept_picture(pending: Batch) -> None:
    waiting = _card(_page(pending), "waiting")
    srcs = re.findall(r'<img src="([^"]+)" width="(\d+)" height="(\d+)"', waiting)
    (input_src, *_), (src, width, height) = srcs
    assert input_src == f".backdrop/thumbs/{pending.staged_sha[:40]}-240.jpg"
    src = unquote(src)
    assert src.startswith(".backdrop/thumbs/") and not Path(src).is_absolute()
    with Image.open(pending.out_dir / src) as im:
        assert im.format == "JPEG" and im.size == (240, 180) == (int(width), int(height))
        assert _near(im.convert("RGB").getpixel((4, 4)), PURPLE)
    assert f'<a href=".backdrop/candidates/{CANDIDATE_KEPT}.jpg" rel="noopener noreferrer">' in waiting


def test_hostile_task_id_in_a_note_is_escaped_everywhere(pending: Batch) -> None:
    text = _page(pending)
    assert text.count("<script>") == 1 and "pwned" not in text.split("<script>")[1]
    assert HOSTILE_TASK not in text and "<img/src" not in text and "dataset.pwned=\"3" not in text
    hostile = _card(text, "hostile")
    assert len(re.findall(r"<img ", hostile)) == 1  # the input; the candidate's picture is not kept
    assert f"candidate · {html.escape(HOSTILE_TASK)}" in hostile
    command = PendingNote("ba9876543210", (HOSTILE_TASK,)).settle_with(HOSTILE_TASK)
    assert f'<code class="cmd">{html.escape(command)}</code>' in hostile
    assert "--task &#x27;&lt;script&gt;" in hostile  # shell-quoted, then escaped
    assert '<div class="ph">picture not available</div>' in hostile


def test_pending_row_without_candidates_keeps_its_ordinary_pair(pending: Batch) -> None:
    late = _card(_page(pending), "late")
    assert 'class="cmd"' not in late and "candidate" not in late
    assert '<div class="ph">no result</div>' in late


def test_pending_page_has_one_image_per_input_and_kept_candidate(pending: Batch) -> None:
    text = _page(pending)
    assert len(re.findall(r"<img ", text)) == PENDING_IMAGES


def test_a_candidate_picture_too_big_to_decode_gets_a_placeholder(pending: Batch) -> None:
    """A kept result claiming 40000 x 40000 pixels is refused at its header, never decoded."""
    ihdr = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
           + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    kept = pending.out_dir / ".backdrop" / "candidates" / f"{CANDIDATE_KEPT}.jpg"
    kept.unlink()
    kept.with_suffix(".png").write_bytes(png)
    waiting = _card(_page(pending), "waiting")
    assert len(re.findall(r"<img ", waiting)) == 1  # the input only
    assert '<div class="ph">not a readable picture</div>' in waiting
    assert f"--task {CANDIDATE_KEPT}</code>" in waiting  # still settleable with it


def test_a_candidate_picture_outside_the_output_folder_is_not_read(pending: Batch,
                                                                     tmp_path: Path) -> None:
    kept = pending.out_dir / ".backdrop" / "candidates" / f"{CANDIDATE_KEPT}.jpg"
    kept.unlink()
    kept.symlink_to(tmp_path / "in" / "elsewhere.jpg")
    Image.new("RGB", (50, 50), PURPLE).save(tmp_path / "in" / "elsewhere.jpg")
    waiting = _card(_page(pending), "waiting")
    assert len(re.findall(r"<img ", waiting)) == 1
    assert waiting.count('<div class="ph">picture not available</div>') == 2


def test_many_candidates_are_capped_and_the_rest_counted(tmp_path: Path) -> None:
    batch = make_pending_batch(tmp_path)
    ids = [f"t-{i:02d}" for i in range(MAX_CANDIDATES + 2)]
    batch.df.loc[0, "note"] = pending_note(PENDING_KEY, *ids)
    waiting = _card(_page(batch), "waiting")
    assert waiting.count("<figcaption") == 1 + MAX_CANDIDATES
    assert "2 more candidate charges are not drawn here" in waiting
    assert f"--task t-{MAX_CANDIDATES - 1:02d}</code>" in waiting
    assert f"--task t-{MAX_CANDIDATES:02d}</code>" not in waiting


def test_pending_row_read_back_from_parquet_keeps_its_candidates(pending: Batch) -> None:
    path = pending.out_dir / "report.parquet"
    pending.df.to_parquet(path, index=False)
    pending.df = pd.read_parquet(path)
    waiting = _card(_page(pending), "waiting")
    assert waiting.count('class="cmd"') == 3


# --- the contact sheet ------------------------------------------------------------------------


def test_contact_sheet_points_a_pending_row_to_the_gallery(pending: Batch) -> None:
    files = write_gallery(pending.df, pending.summary, pending.out_dir)
    with Image.open(files.contact_sheet) as im:
        sheet = im.convert("RGB")
    top, x = 16 + 36, 16
    assert _near(sheet.getpixel((x + 10, top + 40)), GREEN)  # the input
    right = sheet.crop((x + 204, top, x + 404, top + 200))
    colours = {c for _, c in right.getcolors(maxcolors=100_000) or []}
    assert not any(_near(c, PURPLE, 30) for c in colours)  # no candidate passes for the result
    assert _TILE_BG in colours and any(max(c) < 160 for c in colours)  # a placeholder, with text
