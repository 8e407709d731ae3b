"""A picture as a `data:` URI for a Prefect markdown artifact: downscaled, JPEG, within a byte budget.

The Prefect UI shows an image embedded in an artifact's markdown, but a browser refuses `file://` links from the
page; the batch summary (contact sheet, failed rows) and the cost report (its chart) embed their pictures with this.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

__all__ = ["data_uri"]


def data_uri(path: Path, max_side: int, budget: int) -> str | None:
    """`path` as a `data:image/jpeg;base64,...` URI at most `max_side` px wide or tall and about `budget` bytes;
    None if it is not a picture Pillow opens."""
    try:
        with Image.open(path) as im:
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            rgb = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    for quality in (80, 65, 50, 35):
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= budget:
            break
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
