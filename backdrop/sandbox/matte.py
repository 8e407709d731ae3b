"""The sandbox's colour matte: which pixels are the subject, found without a model.

A smooth background (a quadratic surface per channel) is fitted to the border pixels; pixels far
from it are foreground. The mask is despeckled and closed with blur/threshold and its edge feathered;
edge pixels are repainted with nearby subject colours (no halo). The work is done at `MATTE_SIDE` px
and upscaled. Also the array <-> picture helpers the backdrops share.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["MATTE_SIDE", "cut_out", "drop_shadow", "fit", "to_image", "to_l"]

MATTE_SIDE = 512


def cut_out(subject: Image.Image) -> tuple[Image.Image, Image.Image, np.ndarray]:
    """Colour matte at a reduced size: (subject with clean edge colours, alpha, small alpha)."""
    size = subject.size
    small = np.asarray(subject.resize(fit(size, MATTE_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0))
    small_alpha = _matte(small)
    alpha = to_l(small_alpha).resize(size, Image.Resampling.BILINEAR)
    inner = to_l(np.clip((small_alpha - 0.97) / 0.03, 0, 1)).resize(size, Image.Resampling.BILINEAR)
    edge_colours = _bleed(small, small_alpha).resize(size, Image.Resampling.BILINEAR)
    return Image.composite(subject, edge_colours, inner), alpha, small_alpha


def fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """`size` shrunk (never grown) to at most `side` px on its long side, at least 1 px a side."""
    scale = min(1.0, side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def to_l(a: np.ndarray) -> Image.Image:
    """A 0..1 array as an 8-bit greyscale picture."""
    return Image.fromarray(np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8))


def to_image(a: np.ndarray) -> Image.Image:
    """A 0..255 float array (h, w[, 3]) as an 8-bit picture."""
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(to_l(a).filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255


def _matte(rgb: np.ndarray) -> np.ndarray:
    """Foreground alpha in [0, 1] from colour distance to a background fitted on the border."""
    a = rgb.astype(np.float32)
    h, w = a.shape[:2]
    b = max(2, round(0.02 * min(h, w)))
    border = np.zeros((h, w), dtype=bool)
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    ys, xs = np.nonzero(border)
    if len(ys) > 4000:
        ys, xs = ys[::2], xs[::2]
    gy, gx = np.linspace(-1, 1, h, dtype=np.float32), np.linspace(-1, 1, w, dtype=np.float32)
    y, x = gy[ys], gx[xs]
    design = np.stack([np.ones_like(x), x, y, x * y, x * x, y * y], axis=1)
    if len(ys) < 64:  # too few samples for a surface: a flat background colour
        design[:, 1:] = 0
    samples = a[ys, xs]
    keep = np.ones(len(ys), dtype=bool)
    for _ in range(3):  # refit without border pixels that belong to a subject touching the edge
        coef = np.linalg.lstsq(design[keep], samples[keep], rcond=None)[0]
        resid = np.linalg.norm(design @ coef - samples, axis=1)
        keep = resid < max(3 * float(np.median(resid[keep])), 10.0)
        if keep.sum() < 16:
            keep[:] = True
    noise = float(np.median(resid[keep]))
    coef = coef.astype(np.float32)
    Y, X = gy[:, None, None], gx[None, :, None]
    diff = a - (coef[0] + Y * coef[2] + Y * Y * coef[5]) - (X * coef[1] + X * X * coef[4])
    diff -= (Y * X) * coef[3]
    dl = (diff[..., 0] + diff[..., 1] + diff[..., 2]) / 3
    chroma = np.einsum("ijk,ijk->ij", diff, diff) - 3 * dl * dl
    # Darker-than-background pixels weigh less: soft shadows in the source stay background.
    dist2 = np.where(dl < 0, 1.5, 3.0) * dl * dl + chroma
    mask = (dist2 > max(24.0, 4 * noise) ** 2).astype(np.float32)
    side = max(h, w)
    mask = (_blur(mask, max(1.0, 0.003 * side)) > 0.5).astype(np.float32)
    close = max(1.0, 0.004 * side)
    mask = (_blur(mask, close) > 0.2).astype(np.float32)
    mask = (_blur(mask, close) > 0.8).astype(np.float32)
    # Pull the feathered edge slightly inside so the old background does not halo.
    return np.clip((_blur(mask, max(0.8, 0.0015 * side)) - 0.45) / 0.5, 0, 1)


def _bleed(rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
    """Inner subject colours spread outwards: repaints edge pixels mixed with the old background."""
    inner = (alpha > 0.99).astype(np.float32)
    radius = max(2.0, 0.006 * max(alpha.shape))
    spread = np.asarray(to_image(rgb * inner[..., None]).filter(ImageFilter.GaussianBlur(radius)))
    weight = _blur(inner, radius)[..., None]
    out = np.where(weight > 0.02, spread / np.maximum(weight, 0.02), rgb)
    return to_image(out)


def drop_shadow(alpha: np.ndarray) -> np.ndarray:
    """A soft drop shadow's opacity (0..0.45), offset down and right from the small alpha."""
    h, w = alpha.shape
    dy, dx = round(0.02 * h), round(0.012 * w)
    shifted = np.zeros_like(alpha)
    shifted[dy:, dx:] = alpha[: h - dy, : w - dx]
    return 0.45 * _blur(shifted, max(1.0, 0.025 * max(h, w)))
