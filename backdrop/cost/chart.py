"""The cost report's PNG: units charged per UTC day as a plain bar chart, drawn with Pillow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

__all__ = ["BAR", "draw_units_chart"]

BAR = (44, 110, 200)
_INK, _GRID = (40, 40, 40), (225, 225, 225)


def _tick_step(top: float) -> int:
    """The smallest of 1, 2, 5 × 10^k with four steps reaching `top`."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if 4 * m * step >= top:
                return m * step
        step *= 10


def draw_units_chart(daily: pd.DataFrame, path: Path, *, title: str = "Units charged per day (UTC)") -> Path:
    """A plain bar chart of `daily["units"]` by `daily["day"]`, with axis labels, as a PNG."""
    n = max(len(daily), 1)
    left, right, top, bottom = 64, 20, 36, 64
    slot = max(8, min(40, 720 // n))
    width, height = left + right + slot * n, 360
    img = Image.new("RGB", (max(width, 360), height), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    plot_h = height - top - bottom
    step = _tick_step(float(daily["units"].max()) if len(daily) else 0.0)
    y_max = 4 * step
    for i in range(5):  # y grid and tick labels
        y = top + plot_h - round(plot_h * i / 4)
        draw.line([(left, y), (left + slot * n, y)], fill=_GRID)
        draw.text((left - 6, y), str(step * i), fill=_INK, font=font, anchor="rm")
    every = max(1, -(-n // 12))  # at most ~12 day labels
    for i, (day, units) in enumerate(zip(daily.get("day", []), daily.get("units", []), strict=True)):
        x0 = left + slot * i + max(1, slot // 6)
        x1 = left + slot * (i + 1) - max(1, slot // 6)
        if units:
            draw.rectangle([x0, top + plot_h - round(plot_h * units / y_max), x1, top + plot_h], fill=BAR)
        if i % every == 0:
            draw.text(((x0 + x1) // 2, top + plot_h + 6), str(day)[5:], fill=_INK, font=font, anchor="mt")
    draw.line([(left, top), (left, top + plot_h), (left + slot * n, top + plot_h)], fill=_INK, width=1)
    draw.text((left, top - 8), "units", fill=_INK, font=font, anchor="ls")
    draw.text((left + slot * n // 2, height - 14), "day (UTC, month-day)", fill=_INK, font=font, anchor="ms")
    draw.text((img.width // 2, 14), title, fill=_INK, font=font, anchor="mm")
    img.save(path, "PNG")
    return path
