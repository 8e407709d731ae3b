"""One card per report row: the text to show, read from the report's cells, and its two pictures
(`backdrop.gallery.pictures` finds them and makes their thumbnails, one row at a time).

A `pending_reconcile` row whose note names candidate charges also gets one `Candidate` per charge:
the result picture reconciliation kept in `<out>/.backdrop/candidates/` (thumbnailed like any other
picture) and the `backdrop reconcile` command that settles the row with it.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from backdrop.gallery.pictures import Picture, candidate_file, input_file, is_url, output_file, picture
from backdrop.pipeline.inputs import csv_base_dir
from backdrop.report.table import COLUMNS

__all__ = [
    "MAX_CANDIDATES", "Candidate", "Card", "PendingNote", "build_cards", "group_of", "parse_pending_note",
]

_MAX_EXTRA = 4  # passed-through CSV columns shown on a card (e.g. sku, title)
MAX_CANDIDATES = 12  # candidate charges drawn on one card; `backdrop reconcile` lists them all

# What backdrop.pipeline.lifecycle writes for a pending row whose lost create has candidate charges. The
# ids are greedy, so a task id that itself contains "; settle it with" cannot move the key.
_PENDING_NOTE = re.compile(
    r"candidate charges: (?P<ids>.+); settle it with `backdrop reconcile (?P<key>[0-9a-f]{4,64}) "
    r"--task <task id>` \(or --not-created, or --recreate\)",
    re.S,
)


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


def _candidates(pending: PendingNote, out_dir: Path) -> list[Candidate]:
    folder = out_dir / ".backdrop" / "candidates"
    return [
        Candidate(task_id, picture(candidate_file(folder, task_id), "", out_dir,
                                   "picture not available"), pending.settle_with(task_id))
        for task_id in pending.task_ids[:MAX_CANDIDATES]
    ]


def _card(rec: dict[str, Any], out_dir: Path, base_dir: Path | None) -> Card:
    input_value, input_sha = _text(rec.get("input")), _text(rec.get("input_sha256"))
    before_src, before_key = input_file(input_value, input_sha, out_dir, base_dir)
    if _text(rec.get("failed_stage")) == "preflight":  # never decode what preflight refused (a bomb...)
        before_src = None
    before = picture(before_src, before_key, out_dir, "no picture")
    if before.thumb is None and is_url(input_value):
        before = Picture(href=input_value, missing="remote picture")
    status = _text(rec.get("status")) or "skipped"
    after_src = output_file(_text(rec.get("output_path")), out_dir)
    after = picture(after_src, _text(rec.get("output_sha256")), out_dir,
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
