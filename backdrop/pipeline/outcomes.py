"""How a work item ended (`ItemResult`), and the copies a duplicate row gets.

`ItemResult` is the lifecycle's answer for one paid picture; every row that asked for that picture is reported
from it (`backdrop.report.rows`).
A duplicate row reuses the first row's picture: `copy_duplicate_outputs` gives it its own file first, an explicit
step with file system effects, so that the report's `row_outcomes` is a pure mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from backdrop.client.download import EXTENSIONS, sniff_format
from backdrop.client.models import ImageFormat
from backdrop.files import copy_atomic
from backdrop.pipeline.plan import WorkItem

__all__ = ["ItemResult", "copy_duplicate_outputs", "named_like", "now_iso", "output_format_of"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ItemResult:
    """How a work item ended; every row of the item is reported from it."""

    status: str
    stage: str | None = None
    error_code: str | None = None
    message: str | None = None
    http_status: int | None = None
    task_id: str | None = None
    request_id: str | None = None
    attempts: int = 0
    polls: int = 0
    poll_gap: float | None = None  # PollResult.gap_seconds of the poll that found the task ended
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    units: int = 0
    output_path: str | None = None
    output_format: str | None = None  # jpeg, png or webp: sniffed from the bytes
    output_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    reused: bool = False
    possible_duplicate: bool = False
    note: str | None = None


def output_format_of(path: Path) -> ImageFormat | None:
    """The picture format of a file on disk, from its magic bytes (jpeg, png, webp), or None."""
    try:
        with path.open("rb") as fh:
            return sniff_format(fh.read(16))
    except OSError:
        return None


def named_like(dest: Path, src: Path) -> tuple[Path, ImageFormat | None]:
    """Where a copy of the picture `src` goes for a row planned at `dest` (its stem, the picture's extension), and
    the picture's format: a copy takes the extension of its bytes, even from a file an older run misnamed."""
    fmt = output_format_of(src)
    return dest.with_suffix(EXTENSIONS[fmt] if fmt in EXTENSIONS else src.suffix), fmt


def copy_duplicate_outputs(results: list[tuple[WorkItem, ItemResult]],
                           names: dict[int, Path]) -> dict[int, ItemResult]:
    """Copy each succeeded picture to its duplicate rows' own output names (with the picture's extension); return,
    by line, each duplicate's result: its copy, or `output_copy_failed` (disk full, a folder in the way: that row
    fails, the report is still written). Rows not listed report their item's result as it is."""
    copies: dict[int, ItemResult] = {}
    for item, res in results:
        output = res.output_path
        if not (output and res.status == "succeeded"):
            continue
        for row in item.rows[1:]:
            target, _ = named_like(names[row.line], Path(output))
            try:
                copy_atomic(Path(output), target)
                copies[row.line] = replace(res, output_path=str(target))
            except OSError as exc:
                copies[row.line] = replace(
                    res, status="failed", stage="output", error_code="output_copy_failed", output_path=None,
                    message=(f"could not copy the picture of row {item.primary.row_id!r} to "
                             f"{target.name}: {type(exc).__name__}: {exc.strerror or exc}"))
    return copies
