"""A card's pictures: where the before and after files are, and their thumbnails.

Thumbnails are small JPEG files in `<out>/.backdrop/thumbs/`, named by the content hash of the
picture they shrink, so a re-run (or two rows with the same picture) reuses them. Pictures are
opened one at a time and decoded at reduced size (`Image.draft`), so a batch never holds full
pictures in memory. Only pictures in the output folder, the staged inputs, and files inside the
CSV's folder are read (the same rule as preflight).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image, ImageOps

from backdrop.files import atomic_write
from backdrop.pipeline.candidates import candidate_picture
from backdrop.pipeline.inputs import STAGED_INPUTS
from backdrop.pipeline.preflight import MAX_PIXELS

__all__ = [
    "THUMB_LONG_SIDE", "Picture", "candidate_file", "input_file", "is_url", "make_thumb", "output_file",
    "picture",
]

THUMB_LONG_SIDE = 240
_THUMB_QUALITY = 82
#: what a thumbnail is made from: inputs preflight accepts (fit_inputs too) and results; no other loader runs
_THUMB_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


@dataclass(frozen=True)
class Picture:
    """One side of a card: a thumbnail (or why there is none) and a link to the full picture."""

    thumb: Path | None = None  # absolute path of the thumbnail file
    width: int = 0  # thumbnail size, for <img width/height> (no layout shift)
    height: int = 0
    href: str | None = None  # relative path or http(s) URL of the full picture
    missing: str = "no picture"  # placeholder text when there is no thumbnail


def is_url(value: str) -> bool:
    return urlparse(value).scheme in ("http", "https")


def _is_hex(value: str) -> bool:
    return bool(value) and all(c in "0123456789abcdef" for c in value)


def input_file(
    input_value: str, input_sha: str, out_dir: Path, base_dir: Path | None
) -> tuple[Path | None, str]:
    """The staged copy (the exact bytes sent) when present, else the local file next to the CSV.

    Returns the path and the content hash to key its thumbnail on ('' when unknown).
    """
    if _is_hex(input_sha):
        staged = sorted((out_dir / STAGED_INPUTS).glob(f"{input_sha}.*"))
        if staged:
            return staged[0], input_sha
    if not input_value or is_url(input_value) or base_dir is None:
        return None, ""
    try:  # a hostile cell (a 300-character name, a loop, a NUL) costs its thumbnail, never the gallery
        candidate = (base_dir / input_value).resolve()
        # The same rule as preflight: only files inside the CSV's folder are read.
        if not candidate.is_relative_to(base_dir) or not candidate.is_file():
            return None, ""
    except (OSError, RuntimeError, ValueError):
        return None, ""
    return candidate, ""  # may differ from the bytes sent (fit_inputs): key on the file itself


def output_file(output_path: str, out_dir: Path) -> Path | None:
    if not output_path:
        return None
    path = Path(output_path)
    if path.is_file():
        return path
    moved = out_dir / path.name  # the output folder was moved since the run
    return moved if moved.is_file() else None


def candidate_file(folder: Path, task_id: str) -> Path | None:
    """The kept result of a candidate charge, only if it really lies in the candidates folder."""
    path = candidate_picture(folder, task_id)
    if path is None or not path.resolve().is_relative_to(folder.resolve()):
        return None  # e.g. a symlink out of the output folder: not ours to read
    return path


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
        # 0o644: mkstemp makes 0600; thumbnails are for sharing
        atomic_write(dest, lambda tmp: small.save(tmp, "JPEG", quality=_THUMB_QUALITY, optimize=True), mode=0o644)
        return dest, small.width, small.height
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # unreadable or not a picture: the card shows a placeholder


def _relative_href(path: Path, out_dir: Path) -> str | None:
    """A link to a full picture, only when it lives in the output folder (so it survives a copy)."""
    resolved = path.resolve()
    return resolved.relative_to(out_dir).as_posix() if resolved.is_relative_to(out_dir) else None


def picture(src: Path | None, sha256: str, out_dir: Path, missing: str) -> Picture:
    """`src`'s thumbnail and link, or a placeholder saying `missing` (or that it is unreadable)."""
    if src is None:
        return Picture(missing=missing)
    made = make_thumb(src, out_dir / ".backdrop" / "thumbs", sha256)
    if made is None:
        return Picture(href=_relative_href(src, out_dir), missing="not a readable picture")
    thumb, w, h = made
    return Picture(thumb=thumb, width=w, height=h, href=_relative_href(src, out_dir))
