"""One card per report row: where its pictures are, their thumbnails, and the text to show.

Thumbnails are small JPEG files in `<out>/.backdrop/thumbs/`, named by the content hash of the
picture they shrink, so a re-run (or two rows with the same picture) reuses them. Pictures are
opened one at a time and decoded at reduced size (`Image.draft`), so a batch never holds full
pictures in memory.

A `pending_reconcile` row whose note names candidate charges also gets one `Candidate` per charge:
the result picture reconciliation kept in `<out>/.backdrop/candidates/` (thumbnailed like any other
picture) and the `backdrop reconcile` command that settles the row with it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from PIL import Image, ImageOps

from backdrop.pipeline.candidates import candidate_picture
from backdrop.pipeline.preflight import MAX_PIXELS
from backdrop.report.table import COLUMNS

__all__ = [
    "MAX_CANDIDATES", "THUMB_LONG_SIDE", "Candidate", "Card", "PendingNote", "Picture", "build_cards",
    "csv_base_dir", "group_of", "make_thumb", "parse_pending_note",
]

THUMB_LONG_SIDE = 240
_THUMB_QUALITY = 82
_MAX_EXTRA = 4  # passed-through CSV columns shown on a card (e.g. sku, title)
#: what a thumbnail is made from: inputs preflight accepts (fit_inputs too) and results; no other loader runs
_THUMB_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MAX_CANDIDATES = 12  # candidate charges drawn on one card; `backdrop reconcile` lists them all

# What backdrop.pipeline.lifecycle writes for a pending row whose lost create has candidate charges. The
# ids are greedy, so a task id that itself contains "; settle it with" cannot move the key.
_PENDING_NOTE = re.compile(
    r"candidate charges: (?P<ids>.+); settle it with `backdrop reconcile (?P<key>[0-9a-f]{4,64}) "
    r"--task <task id>` \(or --not-created, or --recreate\)",
    re.S,
)


@dataclass(frozen=True)
class Picture:
    """One side of a card: a thumbnail (or why there is none) and a link to the full picture."""

    thumb: Path | None = None  # absolute path of the thumbnail file
    width: int = 0  # thumbnail size, for <img width/height> (no layout shift)
    height: int = 0
    href: str | None = None  # relative path or http(s) URL of the full picture
    missing: str = "no picture"  # placeholder text when there is no thumbnail


@dataclass(frozen=True)
class PendingNote:
    """A pending row's note, parsed: the content key's prefix and the candidate task ids."""

    key: str
    task_ids: tuple[str, ...]

    def settle_with(self, task_id: str) -> str:
        """The command that records `task_id` as this picture's charge (safe to paste in a shell)."""
        return f"backdrop reconcile {self.key} --task {shlex.quote(task_id)}"

    @property
    def not_created(self) -> str:
        """The command that records that the lost create made no charge."""
        return f"backdrop reconcile {self.key} --not-created"


def parse_pending_note(note: str) -> PendingNote | None:
    """The key prefix and candidate task ids of a `pending_reconcile` note, or None if it names none.

    The note reads ``candidate charges: <id> <id> ...; settle it with `backdrop reconcile <key12>
    --task <task id>` (or --not-created, or --recreate)``. Ids are separated by white space and kept
    in order, without repeats; they are vendor data, so the caller escapes them wherever they go.
    """
    found = _PENDING_NOTE.fullmatch(note.strip())
    if found is None:
        return None
    ids = tuple(dict.fromkeys(found["ids"].split()))
    return PendingNote(found["key"], ids) if ids else None


@dataclass(frozen=True)
class Candidate:
    """One candidate charge of a pending row: its result picture (if kept) and the settling command."""

    task_id: str
    picture: Picture
    command: str


@dataclass(frozen=True)
class Card:
    """What the gallery and the contact sheet show for one report row."""

    line: int
    row_id: str
    status: str
    input_label: str
    before: Picture
    after: Picture
    prompt: str = ""
    template_id: str = ""
    failed_stage: str = ""
    error_code: str = ""
    error_message: str = ""
    units: int = 0
    cost: float = 0.0
    task_id: str = ""
    notes: list[str] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)  # pending rows with candidate charges
    candidates_left_out: int = 0  # past MAX_CANDIDATES
    not_created_command: str = ""  # settles a pending row whose lost create made nothing

    @property
    def group(self) -> str:
        return group_of(self.status)


def group_of(status: str) -> str:
    """The filter a status belongs to: succeeded, failed, or other (skipped, pending_reconcile)."""
    return status if status in ("succeeded", "failed") else "other"


def _text(value: Any) -> str:
    """A cell as text: '' for None/NaN/NA (parquet and pandas spell 'missing' several ways)."""
    if value is None:
        return ""
    if not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value):
        return ""
    return str(value)


def _number(value: Any) -> float:
    text = _text(value)
    try:
        number = float(text) if text else 0.0
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def _is_url(value: str) -> bool:
    return urlparse(value).scheme in ("http", "https")


def csv_base_dir(csv_location: str) -> Path | None:
    """The folder a local CSV's relative picture paths are resolved against (None if remote)."""
    if not csv_location:
        return None
    parsed = urlparse(csv_location)
    if parsed.scheme not in ("", "file"):
        return None
    path = Path(parsed.path if parsed.scheme == "file" else csv_location)
    return path.expanduser().resolve().parent


def _input_file(
    input_value: str, input_sha: str, out_dir: Path, base_dir: Path | None
) -> tuple[Path | None, str]:
    """The staged copy (the exact bytes sent) when present, else the local file next to the CSV.

    Returns the path and the content hash to key its thumbnail on ('' when unknown).
    """
    if _is_hex(input_sha):
        staged = sorted((out_dir / ".backdrop" / "inputs").glob(f"{input_sha}.*"))
        if staged:
            return staged[0], input_sha
    if not input_value or _is_url(input_value) or base_dir is None:
        return None, ""
    try:  # a hostile cell (a 300-character name, a loop, a NUL) costs its thumbnail, never the gallery
        candidate = (base_dir / input_value).resolve()
        # The same rule as preflight: only files inside the CSV's folder are read.
        if not candidate.is_relative_to(base_dir) or not candidate.is_file():
            return None, ""
    except (OSError, RuntimeError, ValueError):
        return None, ""
    return candidate, ""  # may differ from the bytes sent (fit_inputs): key on the file itself


def _output_file(output_path: str, out_dir: Path) -> Path | None:
    if not output_path:
        return None
    path = Path(output_path)
    if path.is_file():
        return path
    moved = out_dir / path.name  # the output folder was moved since the run
    return moved if moved.is_file() else None


def _is_hex(value: str) -> bool:
    return bool(value) and all(c in "0123456789abcdef" for c in value)


def _thumb_key(src: Path, sha256: str) -> str:
    if _is_hex(sha256):  # a report value becomes a file name: nothing but hex digits
        return sha256[:40]
    st = src.stat()
    identity = f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:40]


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im.convert("RGB")


def make_thumb(src: Path, thumbs_dir: Path, sha256: str = "") -> tuple[Path, int, int] | None:
    """A JPEG of `src`, THUMB_LONG_SIDE px on its long side at most; None if it is no picture."""
    try:
        dest = thumbs_dir / f"{_thumb_key(src, sha256)}-{THUMB_LONG_SIDE}.jpg"
        if dest.is_file():
            with Image.open(dest) as done:
                return dest, done.width, done.height
        with Image.open(src, formats=_THUMB_FORMATS) as im:  # the formats preflight accepts, and results'
            if im.width * im.height > MAX_PIXELS:  # preflight's ceiling, read from the header: no decode
                return None
            im.draft("RGB", (THUMB_LONG_SIDE, THUMB_LONG_SIDE))  # JPEG: decode at 1/2..1/8 scale
            small = _to_rgb(ImageOps.exif_transpose(im))
        small.thumbnail((THUMB_LONG_SIDE, THUMB_LONG_SIDE), Image.Resampling.LANCZOS)
        thumbs_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=thumbs_dir, prefix=".thumb-", suffix=".jpg")
        os.close(fd)
        try:
            small.save(tmp, "JPEG", quality=_THUMB_QUALITY, optimize=True)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; thumbnails are for sharing
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return dest, small.width, small.height
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # unreadable or not a picture: the card shows a placeholder


def _relative_href(path: Path, out_dir: Path) -> str | None:
    """A link to a full picture, only when it lives in the output folder (so it survives a copy)."""
    resolved = path.resolve()
    return resolved.relative_to(out_dir).as_posix() if resolved.is_relative_to(out_dir) else None


def _picture(src: Path | None, sha256: str, out_dir: Path, missing: str) -> Picture:
    if src is None:
        return Picture(missing=missing)
    made = make_thumb(src, out_dir / ".backdrop" / "thumbs", sha256)
    if made is None:
        return Picture(href=_relative_href(src, out_dir), missing="not a readable picture")
    thumb, w, h = made
    return Picture(thumb=thumb, width=w, height=h, href=_relative_href(src, out_dir))


def _notes(rec: dict[str, Any]) -> list[str]:
    notes = []
    if rec.get("reused") is True and not _text(rec.get("duplicate_of")):
        notes.append("reused from an earlier run")
    if _text(rec.get("duplicate_of")):
        notes.append(f"same picture and prompt as {_text(rec.get('duplicate_of'))}")
    if rec.get("possible_duplicate") is True:
        notes.append("possible duplicate charge")
    if _text(rec.get("note")):
        notes.append(_text(rec.get("note")))
    return notes


def _candidate_file(folder: Path, task_id: str) -> Path | None:
    """The kept result of a candidate charge, only if it really lies in the candidates folder."""
    path = candidate_picture(folder, task_id)
    if path is None or not path.resolve().is_relative_to(folder.resolve()):
        return None  # e.g. a symlink out of the output folder: not ours to read
    return path


def _candidates(pending: PendingNote, out_dir: Path) -> list[Candidate]:
    folder = out_dir / ".backdrop" / "candidates"
    return [
        Candidate(task_id, _picture(_candidate_file(folder, task_id), "", out_dir,
                                    "picture not available"), pending.settle_with(task_id))
        for task_id in pending.task_ids[:MAX_CANDIDATES]
    ]


def _card(rec: dict[str, Any], out_dir: Path, base_dir: Path | None) -> Card:
    input_value, input_sha = _text(rec.get("input")), _text(rec.get("input_sha256"))
    before_src, before_key = _input_file(input_value, input_sha, out_dir, base_dir)
    if _text(rec.get("failed_stage")) == "preflight":  # never decode what preflight refused (a bomb...)
        before_src = None
    before = _picture(before_src, before_key, out_dir, "no picture")
    if before.thumb is None and _is_url(input_value):
        before = Picture(href=input_value, missing="remote picture")
    status = _text(rec.get("status")) or "skipped"
    after_src = _output_file(_text(rec.get("output_path")), out_dir)
    after = _picture(after_src, _text(rec.get("output_sha256")), out_dir,
                     "no result" if status != "skipped" else "not attempted")
    extra = [(k, _text(v)) for k, v in rec.items() if k not in COLUMNS and _text(v)][:_MAX_EXTRA]
    pending = parse_pending_note(_text(rec.get("note"))) if status == "pending_reconcile" else None
    return Card(
        line=int(_number(rec.get("line"))), row_id=_text(rec.get("row_id")), status=status,
        input_label=input_value, before=before, after=after, prompt=_text(rec.get("prompt")),
        template_id=_text(rec.get("template_id")), failed_stage=_text(rec.get("failed_stage")),
        error_code=_text(rec.get("error_code")), error_message=_text(rec.get("error_message")),
        units=int(_number(rec.get("units_charged"))), cost=_number(rec.get("cost")),
        task_id=_text(rec.get("task_id")), notes=_notes(rec), extra=extra,
        candidates=_candidates(pending, out_dir) if pending else [],
        candidates_left_out=max(0, len(pending.task_ids) - MAX_CANDIDATES) if pending else 0,
        not_created_command=pending.not_created if pending else "",
    )


def build_cards(df: pd.DataFrame, out_dir: Path, csv_location: str = "") -> Iterator[Card]:
    """Cards in report order, making each row's thumbnails as it goes (one picture at a time)."""
    out_dir = out_dir.resolve()
    base_dir = csv_base_dir(csv_location)
    for rec in df.to_dict("records"):
        yield _card({str(k): v for k, v in rec.items()}, out_dir, base_dir)
