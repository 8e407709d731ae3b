"""The sandbox's backdrops: a picture drawn from the prompt's words, or from a template.

Colour words (with light/pale/dark modifiers) pick the colours, texture words pick the drawing
(marble, wood, beach, blossom, bokeh, nature, concrete, studio, gradient; else a solid colour), and
the 15 templates are fixed prompts. Drawn at `BACKDROP_SIDE` px and upscaled by the caller. Noise
is seeded from the prompt text and the output size: the same prompt and size give the same backdrop.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .matte import fit

__all__ = ["BACKDROP_SIDE", "DEFAULT_PROMPT", "TEMPLATES", "TEMPLATE_PROMPTS", "Spec", "parse_prompt", "render"]

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
TEMPLATE_PROMPTS: dict[str, str] = {i: p for i, _, _, p in _T}
DEFAULT_PROMPT = "light grey studio sweep"
BACKDROP_SIDE = 800

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


@dataclass(frozen=True)
class Spec:
    """A prompt, read: its text (lower case), its words, and the colours it names in order."""

    text: str
    tokens: frozenset[str]
    colours: tuple[Rgb, ...]

    def colour(self, default: Rgb) -> np.ndarray:
        return np.array(self.colours[0] if self.colours else default, dtype=np.float32)


def parse_prompt(text: str) -> Spec:
    """The words and colours of a prompt (a colour word is lightened or darkened by the word before it)."""
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
    return Spec(text.lower(), frozenset(tokens), tuple(colours))


def _hash_colour(text: str) -> Rgb:
    d = hashlib.sha256(text.encode()).digest()
    r, g, b = colorsys.hsv_to_rgb(d[0] / 255, 0.3 + 0.35 * d[1] / 255, 0.55 + 0.35 * d[2] / 255)
    return r * 255, g * 255, b * 255


def render(spec: Spec, size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
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
    img = Image.fromarray(grid).resize((X.shape[1], Y.shape[0]), Image.Resampling.BICUBIC)
    return np.asarray(img)[..., None]


def _fractal(
    rng: np.random.Generator, Y: np.ndarray, X: np.ndarray, base: int, octaves: int
) -> np.ndarray:
    """Smooth multi-octave noise in about [0, 1], summed at a small size and upscaled once."""
    side = min(max(Y.shape[0], X.shape[1]), base * 2 ** (octaves - 1) * 6)
    h, w = fit((X.shape[1], Y.shape[0]), side)[::-1]
    sy, sx = np.empty((h, 1, 1)), np.empty((1, w, 1))
    total = sum(0.5**o * _noise(rng, sy, sx, base * 2**o, base * 2**o) for o in range(octaves))
    total = np.ascontiguousarray(total[..., 0] / (2 - 0.5 ** (octaves - 1)), dtype=np.float32)
    return _noise_resize(total, Y, X)


def _noise_resize(a: np.ndarray, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((X.shape[1], Y.shape[0]), Image.Resampling.BICUBIC))[..., None]


def _stops(t: np.ndarray, colours: list[Rgb], positions: list[float] | None = None) -> np.ndarray:
    pos = positions or list(np.linspace(0, 1, len(colours)))
    chans = [np.interp(t, pos, [c[k] for c in colours]).astype(np.float32) for k in range(3)]
    return np.stack(chans, axis=-1)[..., 0, :]


def _solid(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    c = spec.colour(_hash_colour(spec.text))
    return c * (1.05 - 0.1 * Y) * (1 - 0.08 * (2 * X - 1) ** 2)


def _gradient(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
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


def _studio(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    c = spec.colour((206, 206, 204))
    r2 = ((X - 0.5) / 0.75) ** 2 + ((Y - 0.42) / 0.9) ** 2
    floor = 1 / (1 + np.exp(-(Y - 0.66) * 18))
    return np.clip(c * (1.12 - 0.36 * r2) * (1 + 0.05 * floor), 0, 255)


def _marble(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    base = spec.colour((236, 234, 229))
    vein = np.array((236, 226, 204) if base.mean() < 110 else (128, 128, 134), dtype=np.float32)
    turb, fade = _fractal(rng, Y, X, 2, 5), _fractal(rng, Y, X, 2, 2)
    field = X * 1.3 + Y * 0.8 + turb * 1.1
    veins = (1 - np.abs(np.sin(field * 3 * np.pi))) ** 14 * np.clip(fade * 2.4 - 0.8, 0, 1)
    fine = (1 - np.abs(np.sin((X * 0.7 - Y * 1.6 + turb * 0.9) * 9 * np.pi))) ** 40
    out = base * (0.96 + 0.07 * _fractal(rng, Y, X, 3, 4))
    return out + (vein - out) * np.clip(0.8 * veins + 0.3 * fine * fade, 0, 1)


def _wood(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
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


def _beach(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
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


def _bokeh(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    base = spec.colour((34, 28, 44)) * 0.6 * (1.2 - 0.5 * Y + 0 * X)
    palette = [(255, 206, 128), (255, 170, 96), (255, 232, 190), (240, 150, 120)]
    return _discs(rng, base, palette, 45, (0.02, 0.07), 0.15)


def _blossom(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    sky = _stops(Y, [(176, 208, 238), (226, 236, 248)]) + 0 * X
    palette = [(250, 196, 214), (244, 164, 194), (255, 222, 232), (236, 140, 178)]
    out = _discs(rng, sky, palette, 90, (0.03, 0.09), 0.6, top=0.7)
    return _discs(rng, out, [(255, 236, 242), (246, 178, 204)], 40, (0.006, 0.015), 0.3, top=0.8)


def _nature(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    foliage = np.array((60, 104, 52), dtype=np.float32) * (0.8 + 0.4 * _fractal(rng, Y, X, 3, 3))
    out = _discs(rng, foliage, [(120, 170, 70), (180, 210, 110), (40, 80, 40), (230, 240, 170)],
                 70, (0.02, 0.08), 0.7)
    blades = _noise(rng, Y, X, 3, X.shape[1] // 3)
    grass = np.array((78, 142, 56), dtype=np.float32) * (0.75 + 0.3 * blades + 0.25 * (Y - 0.62))
    mix = np.clip((Y - 0.6) / 0.05, 0, 1)
    return out + (grass - out) * mix


def _concrete(spec: Spec, rng: np.random.Generator, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    base = spec.colour((164, 162, 158))
    grain = rng.normal(0, 1, (Y.shape[0], X.shape[1])).astype(np.float32)[..., None]
    pits = (rng.random((Y.shape[0], X.shape[1])) < 0.003)[..., None]
    out = base * (0.86 + 0.26 * _fractal(rng, Y, X, 4, 6)) + 4 * grain
    return np.where(pits, out * 0.7, out)


_DRAW: dict[str, Callable[[Spec, np.random.Generator, np.ndarray, np.ndarray], np.ndarray]] = {
    "solid": _solid, "gradient": _gradient, "studio": _studio, "marble": _marble, "wood": _wood,
    "beach": _beach, "bokeh": _bokeh, "blossom": _blossom, "nature": _nature, "concrete": _concrete,
}
