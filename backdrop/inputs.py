"""Reading the user's CSV: one clear error for a bad file, one `InputRow` per line for a good one."""

from __future__ import annotations

import csv
import hashlib
import io
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import fsspec
import httpx
import pandas as pd

from backdrop.errors import BackdropError

__all__ = ["CsvError", "InputRow", "read_rows", "normalise_prompt", "MAX_PROMPT_CHARS"]

KNOWN_COLUMNS = ("id", "image_url", "prompt", "template_id")
#: the vendor publishes no prompt limit; a very long one is almost surely a paste error
MAX_PROMPT_CHARS = 2000


class CsvError(BackdropError):
    """The CSV as a whole cannot be used (empty, unreadable, missing columns)."""

    code = "bad_csv"


@dataclass(frozen=True)
class InputRow:
    """One line of the CSV. `line` is the 1-based data line number (header excluded)."""

    line: int
    row_id: str
    image_url: str
    prompt: str | None
    template_id: str | None
    extra: dict[str, str] = field(default_factory=dict)


def normalise_prompt(prompt: str | None) -> str | None:
    """The prompt as it is sent, keyed and reported: Unicode NFC, trimmed, each run of whitespace one space;
    case is kept. None for no prompt or only whitespace. "beach", "beach " and "beach\\n" are one paid picture."""
    if prompt is None:
        return None
    return " ".join(unicodedata.normalize("NFC", prompt).split()) or None


def _base_dir(location: str) -> Path | None:
    """The folder relative image paths are resolved against: the CSV's own folder, for local CSVs."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else location)
        return path.expanduser().resolve().parent
    return None


def _read_bytes(location: str) -> bytes:
    if urlparse(location).scheme in ("http", "https"):  # fsspec's http needs aiohttp; httpx is here
        try:
            resp = httpx.get(location, follow_redirects=True, timeout=60.0)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise CsvError(f"cannot read CSV {location}: {type(exc).__name__}: {exc}") from exc
        return resp.content
    try:
        with fsspec.open(location, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise CsvError(f"CSV not found: {location}") from exc
    except ImportError as exc:  # e.g. s3:// without s3fs installed
        raise CsvError(f"cannot read {location}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any fsspec/network failure is one clear CSV error
        raise CsvError(f"cannot read CSV {location}: {type(exc).__name__}: {exc}") from exc


def _check_ragged(text: str) -> None:
    """A line with more fields than the header would shift every column (pandas makes the first an index)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    for number, fields in enumerate(reader, start=1):
        if len(fields) > len(header):
            raise CsvError(
                f"data line {number} has {len(fields)} fields but the header has {len(header)}: "
                "quote values that contain commas"
            )


def _row_id(image_url: str, prompt: str | None, template_id: str | None) -> str:
    digest = hashlib.sha256(f"{image_url}\n{prompt or ''}\n{template_id or ''}".encode()).hexdigest()
    return f"row-{digest[:12]}"


def read_rows(
    location: str, *, prompt_override: str | None = None, template_override: str | None = None
) -> tuple[list[InputRow], Path | None]:
    """Parse the CSV at `location` (a path or any fsspec URL).

    Returns the rows and the folder relative image paths are resolved against (None for remote CSVs).
    Raises CsvError with one clear message when the file as a whole is unusable.
    """
    raw = _read_bytes(location)
    if not raw.strip():
        raise CsvError(f"CSV is empty: {location}")
    try:
        text = raw.decode("utf-8-sig")  # tolerates a BOM
    except UnicodeDecodeError as exc:
        raise CsvError(
            f"CSV is not UTF-8 (byte {exc.start}): save it as UTF-8 and run again: {location}"
        ) from exc
    _check_ragged(text)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True,
                         index_col=False)
    except pd.errors.EmptyDataError as exc:
        raise CsvError(f"CSV has no header line: {location}") from exc
    except pd.errors.ParserError as exc:
        raise CsvError(f"CSV cannot be parsed: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if "image_url" not in df.columns:
        raise CsvError(f"CSV is missing the column 'image_url' (has: {', '.join(df.columns)})")
    has_prompt = "prompt" in df.columns or "template_id" in df.columns
    if not has_prompt and prompt_override is None and template_override is None:
        raise CsvError("CSV needs a 'prompt' (or 'template_id') column, or a prompt given with the run")
    if df.empty:
        raise CsvError(f"CSV has a header but no rows: {location}")

    extras = [c for c in df.columns if c not in KNOWN_COLUMNS]
    rows: list[InputRow] = []
    for line, rec in enumerate(df.to_dict("records"), start=1):
        image_url = str(rec.get("image_url", "")).strip()
        prompt = normalise_prompt(prompt_override if prompt_override is not None else rec.get("prompt"))
        if template_override is not None:
            template_id: str | None = template_override
        elif prompt_override is not None:
            template_id = None  # a prompt given for the run replaces the CSV's templates too
        else:
            template_id = rec.get("template_id") or None
        row_id = str(rec.get("id") or "").strip() or _row_id(image_url, prompt, template_id)
        rows.append(
            InputRow(
                line=line,
                row_id=row_id,
                image_url=image_url,
                prompt=prompt,
                template_id=template_id,
                extra={c: rec[c] for c in extras},
            )
        )
    return rows, _base_dir(location)
