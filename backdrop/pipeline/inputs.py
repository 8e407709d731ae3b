"""Reading the user's CSV: one clear error for a bad file, one `InputRow` per line for a good one."""

from __future__ import annotations

import csv
import hashlib
import io
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse, urlsplit

import fsspec
import httpx
import pandas as pd

from backdrop.errors import CsvError, InputRejected
from backdrop.fences import AddressFence, FetchRefused, fenced_sync_transport, parse_networks
from backdrop.identity import normalise_prompt
from backdrop.redact import excerpt
from backdrop.roots import host_allowed, input_roots, shown, within
from backdrop.settings import BackdropSettings

__all__ = [
    "InputRow", "read_rows", "check_prompt", "MAX_PROMPT_CHARS", "STAGED_INPUTS", "csv_base_dir",
]

KNOWN_COLUMNS = ("id", "image_url", "prompt", "template_id")
#: the vendor publishes no prompt limit; a very long one is almost surely a paste error
MAX_PROMPT_CHARS = 2000
_MAX_REDIRECTS = 5
#: where a batch keeps the exact input bytes preflight staged, below its output folder (the gallery reads them)
STAGED_INPUTS = Path(".backdrop", "inputs")


@dataclass(frozen=True)
class InputRow:
    """One line of the CSV. `line` is the 1-based data line number (header excluded)."""

    line: int
    row_id: str
    image_url: str
    prompt: str | None
    template_id: str | None
    extra: dict[str, str] = field(default_factory=dict)


def check_prompt(row: InputRow) -> InputRejected | None:
    """A row needs a prompt or a template; prompts have a sane length (once normalised, as they are sent)."""
    if row.template_id:
        return None
    prompt = normalise_prompt(row.prompt)
    if not prompt:
        return InputRejected("prompt_missing", "the row has neither a prompt nor a template_id")
    if len(prompt) > MAX_PROMPT_CHARS:
        return InputRejected(
            "prompt_too_long", f"prompt is {len(prompt)} characters (limit {MAX_PROMPT_CHARS})"
        )
    return None


def _refuse(location: str, why: str) -> CsvError:
    return CsvError(f"CSV {shown(location)} is refused: {why}")


def _read_local(location: str, path: Path, settings: BackdropSettings) -> tuple[bytes, Path]:
    """A local CSV inside the input roots (symlinks resolved), a regular file, at most `csv_max_bytes`."""
    resolved = within(path, input_roots(settings))
    if resolved is None:
        raise _refuse(location, "it is outside the folders runs may read "
                                "(BACKDROP_INPUT_ROOTS; default the current folder)")
    try:
        info = resolved.stat()
    except FileNotFoundError:  # say where it looked: a deployment's working folder is not the user's
        raise CsvError(f"CSV not found: {shown(location)}: no file {shown(resolved.name)} in the folder "
                       f"{shown(str(resolved.parent), 300)}") from None
    except OSError as exc:
        raise CsvError(f"cannot read CSV {shown(location)}: {exc.strerror or type(exc).__name__}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(location, "it is not a regular file")
    if info.st_size > settings.csv_max_bytes:
        raise _refuse(location, f"it is larger than {settings.csv_max_bytes} bytes (BACKDROP_CSV_MAX_BYTES)")
    try:
        with resolved.open("rb") as fh:
            data = fh.read(settings.csv_max_bytes + 1)
    except OSError as exc:
        raise CsvError(f"cannot read CSV {shown(location)}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > settings.csv_max_bytes:
        raise _refuse(location, f"it is larger than {settings.csv_max_bytes} bytes (BACKDROP_CSV_MAX_BYTES)")
    return data, resolved.parent


def _check_url(location: str, url: str, settings: BackdropSettings) -> None:
    """The scheme and the host of `url` (the CSV's URL or a redirect's target) are allowed."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise _refuse(location, "it is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in settings.csv_url_schemes:
        allowed = ", ".join(settings.csv_url_schemes) or "none"
        raise _refuse(location, f"{scheme}: URLs are not allowed (BACKDROP_CSV_URL_SCHEMES: {allowed})")
    if not host_allowed(host, settings.csv_url_hosts):
        raise _refuse(location, f"host {shown(host or '')} is not allowed (BACKDROP_CSV_URL_HOSTS, none by default)")


def _read_http(location: str, settings: BackdropSettings) -> bytes:
    """Follow at most `_MAX_REDIRECTS` redirects, each target checked like the URL itself; cap the body."""
    url = location
    try:
        fence = AddressFence(parse_networks(settings.fetch_allow_networks))  # no internal address, on any hop
        with httpx.Client(follow_redirects=False, timeout=60.0, trust_env=False,
                          transport=fenced_sync_transport(fence)) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                _check_url(location, url, settings)
                with client.stream("GET", url) as resp:
                    if resp.is_redirect:
                        url = str(resp.url.join(resp.headers["location"]))
                        continue
                    if resp.status_code >= 400:
                        raise CsvError(f"cannot read CSV {shown(location)}: HTTP {resp.status_code}")
                    buf = bytearray()
                    for chunk in resp.iter_bytes():
                        buf += chunk
                        if len(buf) > settings.csv_max_bytes:
                            raise _refuse(location, f"it is larger than {settings.csv_max_bytes} bytes "
                                                    "(BACKDROP_CSV_MAX_BYTES)")
                    return bytes(buf)
    except FetchRefused as exc:
        raise _refuse(location, str(exc)) from None
    except httpx.HTTPError as exc:
        raise CsvError(f"cannot read CSV {shown(location)}: {type(exc).__name__}") from None
    raise _refuse(location, f"more than {_MAX_REDIRECTS} redirects")


def _read_bytes(location: str, settings: BackdropSettings) -> tuple[bytes, Path | None]:
    """The CSV's bytes and the folder relative image paths resolve against (None for a remote CSV).

    A path must lie in the input roots; a URL needs an allowed scheme and host (file:// also the roots).
    """
    if "\x00" in location:
        raise _refuse(location, "it contains a NUL character")
    if "::" in location.split("://", 1)[0]:  # fsspec's chained URLs (simplecache::s3://...) hide the protocol
        raise _refuse(location, "chained fsspec URLs are not allowed")
    try:
        parts = urlsplit(location)
    except ValueError:
        raise _refuse(location, "it is not a valid path or URL") from None
    scheme = parts.scheme.lower()
    if len(scheme) <= 1:  # no scheme, or a Windows drive letter: a path
        return _read_local(location, Path(location), settings)
    if scheme == "file":
        if "file" not in settings.csv_url_schemes:
            raise _refuse(location, "file: URLs are not allowed (give a path, or add file to BACKDROP_CSV_URL_SCHEMES)")
        if parts.netloc not in ("", "localhost"):
            raise _refuse(location, "a file: URL must name no host")
        return _read_local(location, Path(unquote(parts.path)), settings)
    _check_url(location, location, settings)
    if scheme in ("http", "https"):  # fsspec's http needs aiohttp; httpx is here
        return _read_http(location, settings), None
    try:
        with fsspec.open(location, "rb") as fh:
            data = fh.read(settings.csv_max_bytes + 1)
    except FileNotFoundError:
        raise CsvError(f"CSV not found: {shown(location)}") from None
    except ImportError:  # e.g. s3:// without s3fs installed
        raise CsvError(f"cannot read CSV {shown(location)}: the package for {scheme}: URLs is not installed") from None
    except Exception as exc:  # noqa: BLE001 - any fsspec/network failure is one clear CSV error
        raise CsvError(f"cannot read CSV {shown(location)}: {type(exc).__name__}") from None
    if len(data) > settings.csv_max_bytes:
        raise _refuse(location, f"it is larger than {settings.csv_max_bytes} bytes (BACKDROP_CSV_MAX_BYTES)")
    return data, None


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
    location: str, *, prompt_override: str | None = None, template_override: str | None = None,
    settings: BackdropSettings | None = None,
) -> tuple[list[InputRow], Path | None]:
    """Parse the CSV at `location`: a path inside the input roots, or a URL of an allowed scheme and host
    (settings `input_roots`, `csv_url_schemes`, `csv_url_hosts`; `settings` default: the environment's).

    Returns the rows and the folder relative image paths are resolved against (None for remote CSVs).
    Raises CsvError with one short message when the file as a whole is refused or unusable; the message quotes
    at most a few characters of the file, secrets masked. An empty or blank override is no override (the run
    form's empty field).
    """
    prompt_override = prompt_override if prompt_override and prompt_override.strip() else None
    template_override = template_override if template_override and template_override.strip() else None
    raw, base_dir = _read_bytes(location, settings or BackdropSettings())
    where = shown(location)
    if not raw.strip():
        raise CsvError(f"CSV is empty: {where}")
    try:
        text = raw.decode("utf-8-sig")  # tolerates a BOM
    except UnicodeDecodeError as exc:
        raise CsvError(
            f"CSV is not UTF-8 (byte {exc.start}): save it as UTF-8 and run again: {where}"
        ) from None
    _check_ragged(text)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True,
                         index_col=False)
    except pd.errors.EmptyDataError:
        raise CsvError(f"CSV has no header line: {where}") from None
    except pd.errors.ParserError as exc:  # pandas may quote the file: keep only its first words
        raise CsvError(f"CSV cannot be parsed: {excerpt(str(exc), 60)}") from None
    df.columns = [str(c).strip() for c in df.columns]
    if "image_url" not in df.columns:
        first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
        raise CsvError(f"CSV is missing the column 'image_url' ({len(df.columns)} header fields, starting "
                       f"{excerpt(first)!r}): {where}")
    has_prompt = "prompt" in df.columns or "template_id" in df.columns
    if not has_prompt and prompt_override is None and template_override is None:
        raise CsvError("CSV needs a 'prompt' (or 'template_id') column, or a prompt given with the run")
    if df.empty:
        raise CsvError(f"CSV has a header but no rows: {where}")

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
    return rows, base_dir


def csv_base_dir(csv_location: str) -> Path | None:
    """The folder a local CSV's relative picture paths are resolved against (None if remote).

    For a CSV already read (the gallery, after the run): no roots are checked and nothing is read.
    """
    if not csv_location:
        return None
    parsed = urlparse(csv_location)
    if parsed.scheme not in ("", "file"):
        return None
    path = Path(parsed.path if parsed.scheme == "file" else csv_location)
    return path.expanduser().resolve().parent
