"""The sandbox's picture composer: cut the subject out with a colour matte, put it on a backdrop.

`compose(data, prompt=..., template_id=...)` returns JPEG bytes of the input's (upright) size
(`scale=` and `fmt="PNG"` give another size or PNG, for the sandbox's vendor-variant settings):

1. decode a jpg/png (EXIF orientation applied); an alpha channel with real transparency is the
   matte;
2. otherwise fit a smooth background model (quadratic surface per channel) to the border pixels,
   mark pixels far from it as foreground, despeckle and close the mask with blur/threshold, and
   feather the edge (edge pixels are repainted with nearby subject colours, so no halo);
3. draw a backdrop from the prompt words (colours, gradients, textures) or from a template;
4. lay a soft drop shadow on the backdrop, then the subject through the matte.

Mask and backdrop work at a reduced size and are upscaled, so a 4096 px input stays cheap. Noise is
seeded from the backdrop key and the output size: the same input and prompt give the same bytes.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter, ImageOps

__all__ = ["TEMPLATES", "ImageDecodeError", "compose", "scaled_size"]

_T = [
    ("nature_cherryblossom", "Cherry blossom", "Nature", "pink cherry blossom, spring sky"),
    ("nature_beach", "Sunny beach", "Nature", "sandy beach, blue sea and sky"),
    ("nature_beach_sunset", "Beach at sunset", "Nature", "sandy beach at sunset"),
    ("nature_garden", "Green garden", "Nature", "green garden grass"),
    ("studio_white", "White studio", "Studio", "white studio sweep"),
    ("studio_grey", "Grey studio", "Studio", "grey studio sweep"),
    ("studio_black", "Black studio", "Studio", "dark charcoal studio sweep"),
    ("marble_white", "White marble", "Surfaces", "white marble"),
    ("marble_black", "Black marble", "Surfaces", "black marble"),
    ("wood_oak", "Light oak", "Surfaces", "light oak wood"),
    ("wood_walnut", "Dark walnut", "Surfaces", "dark walnut wood"),
    ("concrete_grey", "Concrete", "Surfaces", "grey concrete"),
    ("gradient_sunset", "Sunset gradient", "Gradients", "sunset gradient"),
    ("gradient_pastel", "Pastel gradient", "Gradients", "pastel gradient"),
    ("lights_bokeh", "Evening lights", "Lights", "warm bokeh lights at night"),
]
TEMPLATES: list[dict[str, str]] = [{"id": i, "title": t, "category_name": c} for i, t, c, _ in _T]
_TEMPLATE_PROMPTS: dict[str, str] = {i: p for i, _, _, p in _T}
_DEFAULT_PROMPT = "light grey studio sweep"
_MATTE_SIDE = 512
_BACKDROP_SIDE = 800

_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (244, 244, 241), "black": (24, 24, 26), "red": (196, 36, 42), "blue": (44, 94, 196),
    "green": (52, 140, 74), "pink": (238, 150, 184), "beige": (222, 204, 172),
    "grey": (150, 150, 150), "gray": (150, 150, 150), "navy": (24, 38, 86), "gold": (212, 168, 64),
    "golden": (216, 172, 70), "yellow": (242, 206, 64), "orange": (236, 124, 44),
    "purple": (120, 62, 162), "violet": (142, 84, 204), "lavender": (200, 182, 232),
    "teal": (22, 128, 128), "turquoise": (64, 200, 200), "cream": (245, 234, 210),
    "brown": (122, 82, 52), "silver": (194, 194, 198), "mint": (170, 228, 200),
    "peach": (250, 200, 170), "coral": (244, 122, 102), "charcoal": (56, 58, 62),
    "ivory": (250, 246, 232), "sand": (222, 200, 160), "burgundy": (118, 28, 46),
    "olive": (120, 128, 56),
}
_LIGHTER = {"light": 0.45, "pale": 0.55, "pastel": 0.55, "soft": 0.3}
_DARKER = {"dark": 0.45, "deep": 0.35}
_TEXTURE_WORDS: list[tuple[str, set[str]]] = [
    ("marble", {"marble", "granite", "quartz"}),
    ("wood", {"wood", "wooden", "oak", "walnut", "timber", "plank", "planks", "teak", "mahogany"}),
    ("beach", {"beach", "sea", "ocean", "coast", "shore", "seaside", "tropical"}),
    ("blossom", {"blossom", "blossoms", "sakura", "flowers", "floral", "petals"}),
    ("bokeh", {"bokeh", "lights", "night", "neon", "city", "festive", "sparkle"}),
    ("nature", {"grass", "nature", "forest", "garden", "meadow", "park", "leaves", "trail"}),
    ("concrete", {"concrete", "cement", "stone", "urban", "industrial", "asphalt"}),
    ("studio", {"studio", "sweep", "seamless", "cyclorama", "infinity"}),
    ("gradient", {"gradient", "sunset", "sunrise", "dusk", "pastel", "ombre"}),
]

Rgb = tuple[float, float, float]


class ImageDecodeError(ValueError):
    """The bytes are not a decodable jpg/png image."""


@dataclass(frozen=True)
class _Spec:
    text: str
    tokens: frozenset[str]
    colours: tuple[Rgb, ...]

    def colour(self, default: Rgb) -> np.ndarray:
        return np.array(self.colours[0] if self.colours else default, dtype=np.float32)


def compose(data: bytes, *, prompt: str | None = None, template_id: str | None = None,
            scale: float = 1.0, fmt: Literal["JPEG", "PNG"] = "JPEG") -> bytes:
    """Return `data` with its background replaced, as JPEG bytes of the same (upright) size.

    `template_id` wins over `prompt`; an unknown template id raises `ValueError`. `scale` other
    than 1 resizes the result (aspect kept, at least 1 px a side); `fmt="PNG"` encodes it as PNG.
    """
    if template_id is not None:
        if template_id not in _TEMPLATE_PROMPTS:
            raise ValueError(f"unknown template_id {template_id!r}")
        text = _TEMPLATE_PROMPTS[template_id]
    else:
        text = (prompt or "").strip() or _DEFAULT_PROMPT
    subject, alpha = _decode(data)
    size = subject.size
    if alpha is None:
        subject, alpha, small_alpha = _cut_out(subject)
    else:
        small_alpha = np.asarray(alpha.resize(_fit(size, _MATTE_SIDE), Image.BILINEAR)) / 255
    backdrop = _to_image(_render(_parse(text), _fit(size, _BACKDROP_SIDE), size))
    backdrop = backdrop.resize(size, Image.BICUBIC)
    shadow = _to_l(_shadow(small_alpha)).resize(size, Image.BILINEAR)
    backdrop = Image.composite(Image.new("RGB", size), backdrop, shadow)
    result = Image.composite(subject, backdrop, alpha)
    if scale != 1.0:
        result = result.resize(scaled_size(size, scale), Image.LANCZOS)
    out = io.BytesIO()
    if fmt == "PNG":
        result.save(out, "PNG")
    else:
        result.save(out, "JPEG", quality=90)
    return out.getvalue()


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """`size` times `scale`, rounded, at least 1 px a side."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _cut_out(subject: Image.Image) -> tuple[Image.Image, Image.Image, np.ndarray]:
    """Colour matte at a reduced size: (subject with clean edge colours, alpha, small alpha)."""
    size = subject.size
    small = np.asarray(subject.resize(_fit(size, _MATTE_SIDE), Image.BILINEAR, reducing_gap=2.0))
    small_alpha = _matte(small)
    alpha = _to_l(small_alpha).resize(size, Image.BILINEAR)
    inner = _to_l(np.clip((small_alpha - 0.97) / 0.03, 0, 1)).resize(size, Image.BILINEAR)
    edge_colours = _bleed(small, small_alpha).resize(size, Image.BILINEAR)
    return Image.composite(subject, edge_colours, inner), alpha, small_alpha


def _decode(data: bytes) -> tuple[Image.Image, Image.Image | None]:
    """Decode, apply EXIF orientation; return (RGB subject, alpha if it has real transparency)."""
    try:
        img = Image.open(io.BytesIO(data), formats=("JPEG", "PNG"))
        img.load()
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"not a decodable jpg/png image: {exc}") from exc
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit greyscale PNG: scale to 8 bits
        img = _to_image(np.asarray(img, dtype=np.float32) / 257)
    if img.mode == "P" or "transparency" in img.info:
        img = img.convert("RGBA")
    alpha = None
    if "A" in img.getbands():
        img = img.convert("RGBA")
        candidate = img.getchannel("A")
        if candidate.getextrema()[0] < 250:
            alpha = candidate
    return img.convert("RGB"), alpha


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _to_l(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8))


def _to_image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(_to_l(a).filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255


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
    spread = np.asarray(_to_image(rgb * inner[..., None]).filter(ImageFilter.GaussianBlur(radius)))
    weight = _blur(inner, radius)[..., None]
    out = np.where(weight > 0.02, spread / np.maximum(weight, 0.02), rgb)
    return _to_image(out)


def _shadow(alpha: np.ndarray) -> np.ndarray:
    h, w = alpha.shape
    dy, dx = round(0.02 * h), round(0.012 * w)
    shifted = np.zeros_like(alpha)
    shifted[dy:, dx:] = alpha[: h - dy, : w - dx]
    return 0.45 * _blur(shifted, max(1.0, 0.025 * max(h, w)))


def _parse(text: str) -> _Spec:
    tokens = re.findall(r"[a-z]+", text.lower())
    colours: list[Rgb] = []
    for i, tok in enumerate(tokens):
        if tok in _COLOURS:
            c = np.array(_COLOURS[tok], dtype=np.float32)
            prev = tokens[i - 1] if i else ""
            if prev in _LIGHTER or "pastel" in tokens:
                c = c + (255 - c) * _LIGHTER.get(prev, _LIGHTER["pastel"])
            elif prev in _DARKER:
                c = c * (1 - _DARKER[prev])
            colours.append((float(c[0]), float(c[1]), float(c[2])))
    return _Spec(text.lower(), frozenset(tokens), tuple(colours))


def _hash_colour(text: str) -> Rgb:
    d = hashlib.sha256(text.encode()).digest()
    r, g, b = colorsys.hsv_to_rgb(d[0] / 255, 0.3 + 0.35 * d[1] / 255, 0.55 + 0.35 * d[2] / 255)
    return r * 255, g * 255, b * 255


def _render(spec: _Spec, size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Backdrop as a float32 (h, w, 3) array in 0..255."""
    seed = hashlib.sha256(f"{spec.text}|{out_size[0]}x{out_size[1]}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(seed[:8], "big"))
    texture = next((name for name, words in _TEXTURE_WORDS if words & spec.tokens), "solid")
    w, h = size
    Y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    X = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    img = _DRAW[texture](spec, rng, Y, X)
    return np.broadcast_to(img, (h, w, 3)).astype(np.float32)


def _noise(rng: np.random.Generator, Y: np.ndarray, X: np.ndarray, cy: int, cx: int) -> np.ndarray:
    grid = rng.random((cy + 1, cx + 1), dtype=np.float32)
    img = Image.fromarray(grid).resize((X.shape[1], Y.shape[0]), Image.BICUBIC)
    return np.asarray(img)[..., None]


def _fractal(
    rng: np.random.Generator, Y: np.ndarray, X: np.ndarray, base: int, octaves: int
) -> np.ndarray:
    """Smooth multi-octave noise in about [0, 1], summed at a small size and upscaled once."""
    side = min(max(Y.shape[0], X.shape[1]), base * 2 ** (octaves - 1) * 6)
    h, w = _fit((X.shape[1], Y.shape[0]), side)[::-1]
    sy, sx = np.empty((h, 1, 1)), np.empty((1, w, 1))
    total = sum(0.5**o * _noise(rng, sy, sx, base * 2**o, base * 2**o) for o in range(octaves))
    total = np.ascontiguousarray(total[..., 0] / (2 - 0.5 ** (octaves - 1)), dtype=np.float32)
    return _noise_resize(total, Y, X)


def _noise_resize(a: np.ndarray, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((X.shape[1], Y.shape[0]), Image.BICUBIC))[..., None]


def _stops(t: np.ndarray, colours: list[Rgb], positions: list[float] | None = None) -> np.ndarray:
    pos = positions or list(np.linspace(0, 1, len(colours)))
    chans = [np.interp(t, pos, [c[k] for c in colours]).astype(np.float32) for k in range(3)]
    return np.stack(chans, axis=-1)[..., 0, :]


def _solid(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    c = spec.colour(_hash_colour(spec.text))
    return c * (1.05 - 0.1 * Y) * (1 - 0.08 * (2 * X - 1) ** 2)


def _gradient(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    t = 0.7 * Y + 0.3 * X
    if len(spec.colours) >= 2:
        stops = list(spec.colours[:3])
    elif spec.colours:
        c = np.array(spec.colours[0])
        lighter, shifted = c + (255 - c) * 0.5, c[[0, 2, 1]] * 0.5 + c * 0.5
        stops = [tuple(lighter), tuple(c), tuple(shifted)]
    elif spec.tokens & {"sunset", "sunrise", "dusk"}:
        stops = [(72, 62, 138), (226, 104, 128), (252, 178, 92)]
    elif "pastel" in spec.tokens:
        stops = [(252, 214, 226), (226, 214, 246), (200, 230, 246)]
    else:
        stops = [_hash_colour(spec.text), _hash_colour(spec.text[::-1])]
    return _stops(t, stops) + (rng.random(t.shape[:2], dtype=np.float32)[..., None] - 0.5) * 2


def _studio(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    c = spec.colour((206, 206, 204))
    r2 = ((X - 0.5) / 0.75) ** 2 + ((Y - 0.42) / 0.9) ** 2
    floor = 1 / (1 + np.exp(-(Y - 0.66) * 18))
    return np.clip(c * (1.12 - 0.36 * r2) * (1 + 0.05 * floor), 0, 255)


def _marble(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    base = spec.colour((236, 234, 229))
    vein = np.array((236, 226, 204) if base.mean() < 110 else (128, 128, 134), dtype=np.float32)
    turb, fade = _fractal(rng, Y, X, 2, 5), _fractal(rng, Y, X, 2, 2)
    field = X * 1.3 + Y * 0.8 + turb * 1.1
    veins = (1 - np.abs(np.sin(field * 3 * np.pi))) ** 14 * np.clip(fade * 2.4 - 0.8, 0, 1)
    fine = (1 - np.abs(np.sin((X * 0.7 - Y * 1.6 + turb * 0.9) * 9 * np.pi))) ** 40
    out = base * (0.96 + 0.07 * _fractal(rng, Y, X, 3, 4))
    return out + (vein - out) * np.clip(0.8 * veins + 0.3 * fine * fade, 0, 1)


def _wood(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    dark = spec.tokens & {"walnut", "dark", "mahogany"}
    base = np.array((104, 66, 42) if dark else (204, 160, 110), dtype=np.float32)
    planks = 6
    idx = np.minimum((Y * planks).astype(int), planks - 1)
    tint = (1 + rng.normal(0, 0.06, planks)).astype(np.float32)[idx]
    phase = rng.random(planks, dtype=np.float32)[idx] * 10
    warp = _noise(rng, Y, X, 40, 3) * 3
    grain = np.sin((Y * 90 + warp + phase + X * 0.8) * np.pi)
    out = base * tint * (0.9 + 0.07 * grain + 0.08 * _noise(rng, Y, X, 80, 6))
    seam = np.abs((Y * planks) - np.round(Y * planks)) < 0.012
    return np.where(seam, out * 0.55, out)


def _beach(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    sunset = bool(spec.tokens & {"sunset", "sunrise", "dusk"})
    sky_stops = [(96, 76, 140), (236, 128, 110), (252, 196, 120)] if sunset else [
        (96, 160, 228), (150, 196, 240), (214, 232, 248)]
    sky = _stops(Y / 0.42, sky_stops)
    sea_c = np.array((70, 70, 120) if sunset else (28, 108, 156), dtype=np.float32)
    waves = np.sin((Y * 160 + _noise(rng, Y, X, 6, 12) * 6) * np.pi)
    sea = sea_c * (0.9 + 0.25 * (Y - 0.42) / 0.16 + 0.06 * waves)
    sand_c = np.array((214, 170, 128) if sunset else (230, 206, 160), dtype=np.float32)
    grain = rng.random((Y.shape[0], X.shape[1]), dtype=np.float32)[..., None]
    sand = sand_c * (0.92 + 0.08 * _fractal(rng, Y, X, 4, 3) + 0.05 * grain + 0.06 * (Y - 0.6))
    shore = 0.58 + 0.025 * (_noise(rng, Y, X, 1, 6) - 0.5)
    foam = np.clip(1 - np.abs(Y - shore) / 0.012, 0, 1) * 0.8
    out = np.where(Y < 0.42, sky, np.where(Y < shore, sea, sand))
    return out + (248 - out) * foam


def _discs(rng: np.random.Generator, base: np.ndarray, palette: list[Rgb], n: int,
           radius: tuple[float, float], soft: float, top: float = 1.0) -> np.ndarray:
    out = np.array(base, dtype=np.float32)
    h, w = out.shape[:2]
    side = max(h, w)
    for _ in range(n):
        r = rng.uniform(*radius) * side
        cy, cx = rng.uniform(0, top) * h, rng.uniform(0, 1) * w
        colour = np.array(palette[rng.integers(len(palette))], dtype=np.float32)
        y0, y1, x0, x1 = (max(0, int(v)) for v in (cy - r, cy + r + 1, cx - r, cx + r + 1))
        yy, xx = np.ogrid[y0:min(h, y1), x0:min(w, x1)]
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        cover = (np.clip((r - d) / (soft * r + 1), 0, 1) * rng.uniform(0.35, 0.8))[..., None]
        patch = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = patch + (colour - patch) * cover
    return out


def _bokeh(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    base = spec.colour((34, 28, 44)) * 0.6 * (1.2 - 0.5 * Y + 0 * X)
    palette = [(255, 206, 128), (255, 170, 96), (255, 232, 190), (240, 150, 120)]
    return _discs(rng, base, palette, 45, (0.02, 0.07), 0.15)


def _blossom(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    sky = _stops(Y, [(176, 208, 238), (226, 236, 248)]) + 0 * X
    palette = [(250, 196, 214), (244, 164, 194), (255, 222, 232), (236, 140, 178)]
    out = _discs(rng, sky, palette, 90, (0.03, 0.09), 0.6, top=0.7)
    return _discs(rng, out, [(255, 236, 242), (246, 178, 204)], 40, (0.006, 0.015), 0.3, top=0.8)


def _nature(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    foliage = np.array((60, 104, 52), dtype=np.float32) * (0.8 + 0.4 * _fractal(rng, Y, X, 3, 3))
    out = _discs(rng, foliage, [(120, 170, 70), (180, 210, 110), (40, 80, 40), (230, 240, 170)],
                 70, (0.02, 0.08), 0.7)
    blades = _noise(rng, Y, X, 3, X.shape[1] // 3)
    grass = np.array((78, 142, 56), dtype=np.float32) * (0.75 + 0.3 * blades + 0.25 * (Y - 0.62))
    mix = np.clip((Y - 0.6) / 0.05, 0, 1)
    return out + (grass - out) * mix


def _concrete(spec: _Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    base = spec.colour((164, 162, 158))
    grain = rng.normal(0, 1, (Y.shape[0], X.shape[1])).astype(np.float32)[..., None]
    pits = (rng.random((Y.shape[0], X.shape[1])) < 0.003)[..., None]
    out = base * (0.86 + 0.26 * _fractal(rng, Y, X, 4, 6)) + 4 * grain
    return np.where(pits, out * 0.7, out)


_DRAW: dict[str, Callable[[_Spec, np.random.Generator, np.ndarray, np.ndarray], np.ndarray]] = {
    "solid": _solid, "gradient": _gradient, "studio": _studio, "marble": _marble, "wood": _wood,
    "beach": _beach, "bokeh": _bokeh, "blossom": _blossom, "nature": _nature, "concrete": _concrete,
}
