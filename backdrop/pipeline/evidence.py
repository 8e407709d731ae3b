"""Does a result picture show the product of an input picture? The second gate of attributing a charge.

A background change keeps the subject and replaces what surrounds it. So compare only where the input's
subject is (pixels far from the input's border colour), on a common grid, so that a result of another pixel
size or format compares the same. The subject must be mostly kept, and clearly better kept than by chance
(the same test against the result moved by a third of its size). Anything unclear is `unknown`, which never spends
money: it leaves a lost create for a person (see `backdrop.pipeline.reconcile`).
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from backdrop.pipeline.preflight import MAX_PIXELS

__all__ = ["Verdict", "keeps_subject"]

Verdict = Literal["match", "no", "unknown"]

_GRID = 96  # long side of the common grid
_BACKGROUND_DISTANCE = 48.0  # a pixel this far (max over channels) from the border colour is subject
_KEPT_DISTANCE = 40.0  # a subject pixel this close in the result is kept


def _load(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "WEBP")) as img:
        if img.width * img.height > MAX_PIXELS:  # never decode more than preflight allows
            raise ValueError("picture too large to compare")
        img.draft("RGB", (_GRID * 4, _GRID * 4))  # JPEG: decode at a reduced scale
        return ImageOps.exif_transpose(img).convert("RGB")


def _grid(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(img.resize(size, Image.Resampling.BOX), dtype=np.float32)


def keeps_subject(input_bytes: bytes, result_bytes: bytes) -> Verdict:
    """`match` when the result keeps the input's subject, `no` when it clearly does not, else `unknown`."""
    try:
        src, out = _load(input_bytes), _load(result_bytes)
    except Exception:  # noqa: BLE001 - an unreadable picture proves nothing either way
        return "unknown"
    ratio_in, ratio_out = src.width / src.height, out.width / out.height
    if abs(ratio_in - ratio_out) > 0.02 * ratio_in:
        return "no"  # another shape: not this picture changed (a vendor that crops or pads is never matched)
    scale = _GRID / max(src.size)
    size = (max(8, round(src.width * scale)), max(8, round(src.height * scale)))
    a, b = _grid(src, size), _grid(out, size)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    background = np.median(border, axis=0)
    subject = np.abs(a - background).max(axis=2) > _BACKGROUND_DISTANCE
    share = float(subject.mean())
    if share < 0.01 or share > 0.9:
        return "unknown"  # no subject to speak of, or no background: nothing to tell a change by
    kept = float((np.abs(a - b).max(axis=2)[subject] <= _KEPT_DISTANCE).mean())
    h, w = subject.shape
    chance = max(  # the same test against the result moved by a third of its width, or of its height
        float((np.abs(a - np.roll(b, shift, axis=axis)).max(axis=2)[subject] <= _KEPT_DISTANCE).mean())
        for shift, axis in ((w // 3, 1), (h // 3, 0)))
    if kept >= 0.6 and kept - chance >= 0.25:
        return "match"
    if kept < 0.3:
        return "no"
    return "unknown"
