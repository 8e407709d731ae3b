"""Draw the demo product photos into backdrop/demo/ and write backdrop/demo/products.csv.

Each product is a few simple shapes, lit with a fake normal (cylinders, ellipsoids) or a flat
gradient, on a plain light studio background so the sandbox's colour matte can cut it out.
Deterministic: the same run writes the same bytes.
Usage: `python scripts/make_demo_images.py [out_dir]` (default: backdrop/demo/).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT_DIR = Path(__file__).resolve().parents[1] / "backdrop" / "demo"
_SS = 3  # supersampling factor for antialiased shape masks
_LIGHT = np.array([-0.5, -0.55, 0.67]) / np.linalg.norm([-0.5, -0.55, 0.67])
_HALF = (_LIGHT + [0, 0, 1]) / np.linalg.norm(_LIGHT + [0, 0, 1])

Draw = Callable[[ImageDraw.ImageDraw, int], None]
Colour = tuple[int, int, int]


class Canvas:
    """A float RGB picture on a light studio background, painted layer by layer."""

    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.Y = np.arange(h, dtype=np.float32)[:, None]
        self.X = np.arange(w, dtype=np.float32)[None, :]
        top, bottom = np.array([245, 245, 243.0]), np.array([229, 229, 226.0])
        t = (self.Y / h)[..., None]
        vignette = 1 - 0.03 * (((self.X - w / 2) / w) ** 2 + ((self.Y - h / 2) / h) ** 2)[..., None]
        self.rgb = (top + (bottom - top) * t) * vignette

    def paint(self, alpha: np.ndarray, colour: np.ndarray | Colour) -> None:
        a = np.clip(alpha, 0, 1)[..., None]
        self.rgb = self.rgb + (np.asarray(colour, dtype=np.float32) - self.rgb) * a

    def mask(self, *draws: Draw) -> np.ndarray:
        img = Image.new("L", (self.w * _SS, self.h * _SS), 0)
        pen = ImageDraw.Draw(img)
        for draw in draws:
            draw(pen, _SS)
        return np.asarray(img.resize((self.w, self.h), Image.BOX), dtype=np.float32) / 255

    def contact_shadow(self, cx: float, cy: float, rx: float, ry: float) -> None:
        d = ((self.X - cx) / rx) ** 2 + ((self.Y - cy) / ry) ** 2
        self.paint(0.06 * np.exp(-2.5 * d), (0, 0, 0))

    def lit(self, colour: Colour, nx: np.ndarray, ny: np.ndarray, gloss: float = 40,
            spec: float = 0.45) -> np.ndarray:
        nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
        diffuse = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0, 1)[..., None]
        shine = np.clip(nx * _HALF[0] + ny * _HALF[1] + nz * _HALF[2], 0, 1)[..., None] ** gloss
        return np.asarray(colour, dtype=np.float32) * (0.4 + 0.7 * diffuse) + 255 * spec * shine

    def lathe(self, colour: Colour, cx: float, ys: list[float], rs: list[float],
              **kw: float) -> None:
        """A solid of revolution around x = cx with radius rs[i] at height ys[i]."""
        r = np.interp(self.Y[:, 0], ys, rs).astype(np.float32)[:, None]
        inside_y = np.clip(self.Y - ys[0] + 0.5, 0, 1) * np.clip(ys[-1] - self.Y + 0.5, 0, 1)
        alpha = np.clip(r - np.abs(self.X - cx) + 0.5, 0, 1) * inside_y
        nx = np.clip((self.X - cx) / np.maximum(r, 1), -1, 1)
        self.paint(alpha, self.lit(colour, nx, np.zeros_like(nx) - 0.05, **kw))

    def ellipsoid(self, colour: Colour, cx: float, cy: float, rx: float, ry: float,
                  **kw: float) -> None:
        nx, ny = (self.X - cx) / rx, (self.Y - cy) / ry
        alpha = np.clip((1 - np.sqrt(nx * nx + ny * ny)) * min(rx, ry) + 0.5, 0, 1)
        self.paint(alpha, self.lit(colour, np.clip(nx, -1, 1), np.clip(ny, -1, 1), **kw))

    def flat(self, colour: Colour, *draws: Draw, grain: float = 0.0, seed: int = 0) -> None:
        """Fill shapes with a colour lit from the top left across their bounding box."""
        alpha = self.mask(*draws)
        rows, cols = np.nonzero(alpha.any(axis=1))[0], np.nonzero(alpha.any(axis=0))[0]
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        t = 0.5 * (self.X - x0) / (x1 - x0) + 0.5 * (self.Y - y0) / (y1 - y0)
        rgb = np.asarray(colour, dtype=np.float32) * (1.12 - 0.3 * np.clip(t, 0, 1))[..., None]
        if grain:
            noise = np.random.default_rng(seed).normal(0, grain, (self.h, self.w, 1))
            rgb = rgb * (1 + noise.astype(np.float32))
        self.paint(alpha, rgb)

    def save(self, path: Path) -> None:
        Image.fromarray(np.clip(self.rgb + 0.5, 0, 255).astype(np.uint8)).save(
            path, "JPEG", quality=85
        )


def poly(pts: list[tuple[float, float]]) -> Draw:
    return lambda d, k: d.polygon([(x * k, y * k) for x, y in pts], fill=255)


def ellipse(box: tuple[float, float, float, float], width: int = 0) -> Draw:
    def draw(d: ImageDraw.ImageDraw, k: int) -> None:
        b = [v * k for v in box]
        d.ellipse(b, fill=None if width else 255, outline=255 if width else None, width=width * k)

    return draw


def rrect(box: tuple[float, float, float, float], radius: float) -> Draw:
    return lambda d, k: d.rounded_rectangle([v * k for v in box], radius=radius * k, fill=255)


def line(pts: list[tuple[float, float]], width: float) -> Draw:
    return lambda d, k: d.line([(x * k, y * k) for x, y in pts], fill=255, width=round(width * k),
                               joint="curve")


def arc(box: tuple[float, float, float, float], start: float, end: float, width: float) -> Draw:
    return lambda d, k: d.arc([v * k for v in box], start, end, fill=255, width=round(width * k))


def mug(c: Canvas) -> None:
    red = (186, 38, 44)
    c.contact_shadow(490, 770, 260, 40)
    c.flat(red, ellipse((560, 410, 780, 680), width=40))
    c.lathe(red, 480, [330, 740, 765], [175, 170, 160])
    c.ellipsoid(red, 480, 330, 175, 36, spec=0.2)
    c.ellipsoid((92, 20, 24), 480, 332, 155, 28, spec=0.05)


def sneaker(c: Canvas) -> None:
    c.contact_shadow(560, 600, 420, 30)
    c.flat((196, 140, 84), poly([(140, 520), (980, 520), (1000, 560), (960, 600), (170, 600),
                                 (130, 570)]))
    upper = [(150, 520), (170, 330), (260, 300), (420, 340), (560, 250), (640, 240), (700, 330),
             (820, 400), (960, 450), (990, 520)]
    c.flat((38, 78, 168), poly(upper), grain=0.02, seed=2)
    c.flat((250, 214, 72), line([(280, 470), (520, 420), (780, 380)], 34))
    c.flat((200, 40, 50), poly([(150, 520), (170, 330), (240, 310), (250, 520)]))
    laces = [line([(560 + 28 * i, 290 + 22 * i), (600 + 28 * i, 262 + 22 * i)], 10)
             for i in range(5)]
    c.paint(c.mask(*laces), (40, 40, 46))


def bottle(c: Canvas) -> None:
    c.contact_shadow(450, 1060, 200, 28)
    c.lathe((26, 140, 142), 450, [330, 380, 440, 1040, 1060], [60, 90, 130, 130, 120], gloss=60)
    c.lathe((182, 184, 190), 450, [210, 340], [64, 64], gloss=80, spec=0.7)


def watch(c: Canvas) -> None:
    c.contact_shadow(500, 900, 180, 30)
    c.flat((112, 70, 40), rrect((410, 60, 590, 400), 40), rrect((410, 600, 590, 940), 40),
           grain=0.03, seed=4)
    c.ellipsoid((214, 172, 72), 500, 500, 200, 200, gloss=30, spec=0.6)
    c.ellipsoid((28, 38, 78), 500, 500, 165, 165, spec=0.25, gloss=12)
    ticks = [line([(500 + 140 * np.cos(a), 500 + 140 * np.sin(a)),
                   (500 + 155 * np.cos(a), 500 + 155 * np.sin(a))], 8)
             for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    hands = [line([(500, 500), (500, 380)], 10), line([(500, 500), (590, 545)], 12)]
    c.paint(c.mask(*ticks, *hands), (232, 200, 120))
    c.ellipsoid((214, 172, 72), 500, 500, 14, 14)


def headphones(c: Canvas) -> None:
    c.contact_shadow(500, 860, 330, 35)
    c.flat((44, 44, 50), arc((220, 150, 780, 760), 180, 360, 46))
    c.flat((150, 40, 50), arc((250, 180, 750, 730), 200, 340, 22))
    for cx in (250, 750):
        c.lathe((186, 186, 192), cx, [430, 520], [18, 18], spec=0.6)
        c.ellipsoid((64, 64, 72), cx, 650, 115, 175, spec=0.3, gloss=25)
        c.ellipsoid((150, 40, 50), cx, 650, 60, 95, spec=0.3)


def handbag(c: Canvas) -> None:
    c.contact_shadow(500, 850, 340, 36)
    c.flat((150, 98, 58), arc((330, 170, 670, 560), 180, 360, 36))
    c.flat((190, 128, 78), poly([(250, 380), (750, 380), (830, 840), (170, 840)]),
           grain=0.03, seed=6)
    c.flat((164, 104, 60), poly([(240, 380), (760, 380), (740, 560), (500, 610), (260, 560)]),
           grain=0.03, seed=7)
    c.ellipsoid((222, 184, 90), 500, 585, 26, 20, gloss=60, spec=0.8)


def chair(c: Canvas) -> None:
    fabric = (36, 118, 120)
    c.contact_shadow(450, 1090, 300, 30)
    c.flat((140, 94, 56), line([(270, 700), (240, 1080)], 26), line([(640, 700), (670, 1080)], 26),
           line([(330, 720), (320, 1000)], 20), line([(580, 720), (590, 1000)], 20),
           line([(300, 180), (270, 700)], 28), line([(610, 180), (640, 700)], 28))
    c.flat(fabric, rrect((300, 200, 610, 520), 30), grain=0.025, seed=8)
    c.flat(fabric, poly([(250, 640), (660, 640), (700, 740), (210, 740)]), grain=0.025, seed=9)


def lamp(c: Canvas) -> None:
    c.contact_shadow(450, 1090, 220, 28)
    c.ellipsoid((52, 52, 58), 450, 1060, 170, 40, spec=0.4)
    c.flat((176, 176, 182), line([(450, 1050), (420, 650), (450, 480)], 20))
    c.lathe((240, 188, 40), 450, [200, 500], [80, 250], gloss=20, spec=0.3)
    c.ellipsoid((150, 110, 20), 450, 500, 250, 36, spec=0.0)


def vase(c: Canvas) -> None:
    c.contact_shadow(450, 1060, 200, 30)
    ys = np.linspace(225, 1050, 120)
    rs = 62 + 145 * np.exp(-(((ys - 740) / 210) ** 2)) + 34 * np.exp(-(((ys - 225) / 40) ** 2))
    c.lathe((38, 70, 170), 450, list(ys), list(rs), gloss=50, spec=0.6)
    c.ellipsoid((24, 40, 100), 450, 227, 94, 16, spec=0.1)


def perfume(c: Canvas) -> None:
    c.contact_shadow(500, 860, 230, 30)
    c.flat((236, 140, 170), rrect((300, 420, 700, 850), 40))
    c.paint(c.mask(rrect((340, 450, 390, 810), 20)) * 0.35, (255, 255, 255))
    c.flat((200, 90, 130), rrect((420, 580, 580, 700), 6))
    c.lathe((200, 164, 70), 500, [360, 420], [55, 55], gloss=70, spec=0.7)
    c.lathe((214, 172, 72), 500, [200, 365], [95, 95], gloss=70, spec=0.7)


def backpack(c: Canvas) -> None:
    c.contact_shadow(500, 1090, 330, 30)
    c.flat((60, 60, 66), arc((420, 150, 580, 320), 180, 360, 22))
    c.flat((46, 46, 52), rrect((200, 330, 260, 900), 25), rrect((740, 330, 800, 900), 25))
    c.flat((230, 108, 40), rrect((240, 220, 760, 1080), 150), grain=0.02, seed=11)
    c.flat((196, 84, 30), rrect((310, 700, 690, 1020), 60), grain=0.02, seed=12)
    c.paint(c.mask(arc((270, 250, 730, 900), 200, 340, 8), line([(340, 740), (660, 740)], 8)),
            (50, 44, 40))


def cap(c: Canvas) -> None:
    c.contact_shadow(560, 610, 440, 30)
    before = c.rgb.copy()
    c.ellipsoid((30, 46, 94), 470, 580, 330, 330, spec=0.2, gloss=10)
    c.rgb[581:] = before[581:]  # keep the upper half of the ellipsoid: the crown
    c.flat((24, 36, 76), ellipse((560, 548, 1070, 614)))
    c.ellipsoid((44, 62, 120), 470, 252, 26, 14)
    c.paint(c.mask(arc((250, 260, 700, 900), 200, 320, 5)), (200, 60, 60))


def sunglasses(c: Canvas) -> None:
    frame = (120, 70, 36)
    c.contact_shadow(550, 560, 420, 26)
    c.flat(frame, line([(150, 280), (60, 250)], 20), line([(950, 280), (1040, 250)], 20),
           arc((470, 250, 630, 360), 200, 340, 22))
    for cx in (330, 770):
        c.flat(frame, ellipse((cx - 195, 230, cx + 195, 500)))
        c.ellipsoid((30, 34, 44), cx, 365, 170, 120, spec=0.5, gloss=15)


def candle(c: Canvas) -> None:
    c.contact_shadow(500, 860, 240, 30)
    c.lathe((196, 116, 40), 500, [360, 840, 860], [205, 205, 195], gloss=60, spec=0.6)
    c.ellipsoid((224, 192, 146), 500, 362, 205, 42, spec=0.05)
    c.flat((30, 30, 30), line([(500, 362), (500, 320)], 6))
    c.ellipsoid((250, 170, 40), 500, 290, 16, 38, spec=0.2)


# id, draw, size, prompt, sku, title
PRODUCTS: list[tuple[str, Callable[[Canvas], None], tuple[int, int], str, str, str]] = [
    ("mug", mug, (1000, 1000), "white marble countertop, soft daylight", "BD-1001",
     "Ceramic mug, red"),
    ("sneaker", sneaker, (1100, 800), "grey concrete floor, urban street", "BD-1002",
     "Running sneaker, blue"),
    ("bottle", bottle, (900, 1200), "sandy beach at sunset", "BD-1003", "Steel water bottle, teal"),
    ("watch", watch, (1000, 1000), "black velvet with warm bokeh lights", "BD-1004",
     "Gold watch, leather strap"),
    ("headphones", headphones, (1000, 1000), "studio grey sweep", "BD-1005",
     "Over-ear headphones, black"),
    ("handbag", handbag, (1000, 1000), "light oak wood table", "BD-1006", "Leather handbag, tan"),
    ("chair", chair, (900, 1200), "pastel pink gradient", "BD-1007", "Side chair, teal fabric"),
    ("lamp", lamp, (900, 1200), "dark walnut wood desk", "BD-1008", "Desk lamp, yellow"),
    ("vase", vase, (900, 1200), "green garden grass, morning light", "BD-1009",
     "Ceramic vase, cobalt"),
    ("perfume", perfume, (1000, 1000), "pink cherry blossom, spring", "BD-1010",
     "Eau de parfum, 50 ml"),
    ("backpack", backpack, (1000, 1200), "forest trail, nature", "BD-1011", "Day backpack, orange"),
    ("cap", cap, (1100, 800), "sunny yellow backdrop", "BD-1012", "Baseball cap, navy"),
    ("sunglasses", sunglasses, (1100, 800), "tropical beach, turquoise sea", "BD-1013",
     "Sunglasses, tortoiseshell"),
    ("candle", candle, (1000, 1000), "beige linen, cozy evening", "BD-1014",
     "Scented candle, amber jar"),
]


def main(out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for pid, draw, (w, h), prompt, sku, title in PRODUCTS:
        canvas = Canvas(w, h)
        draw(canvas)
        canvas.save(out_dir / f"{pid}.jpg")
        rows.append({"id": pid, "image_url": f"{pid}.jpg", "prompt": prompt, "sku": sku,
                     "title": title})
    with open(out_dir / "products.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "image_url", "prompt", "sku", "title"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} photos and products.csv to {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR)
