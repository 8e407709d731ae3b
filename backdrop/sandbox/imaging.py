"""Placeholder, replaced by the imaging work: re-encode the input as JPEG of the same size."""

from __future__ import annotations

import io

from PIL import Image

TEMPLATES: list[dict[str, str]] = [
    {"id": "nature_cherryblossom", "title": "Cherry blossom", "category_name": "Nature"},
]


class ImageDecodeError(ValueError):
    pass


def compose(data: bytes, *, prompt: str | None = None, template_id: str | None = None) -> bytes:
    try:
        img = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(str(exc)) from exc
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()
