"""Pictures the tests and benches draw: solid JPEGs, product-like shapes, and a PNG that lies about its size.

One owner for every drawing helper, so that each caller gets the same bytes wherever it draws: tests compare
content keys and hashes, which depend on the exact bytes (size, colour, JPEG quality).
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["draw_product", "numbered_products", "picture", "png_claiming", "random_products", "save_picture"]

RGB = tuple[int, int, int]


def picture(width: int = 64, height: int = 48, fmt: str = "JPEG", colour: RGB = (30, 120, 200)) -> bytes:
    """One solid-colour picture's bytes (PIL's default quality for the format)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, fmt)
    return buf.getvalue()


def save_picture(path: Path, width: int, height: int, colour: RGB, fmt: str = "JPEG") -> Path:
    """`picture(...)` written to `path`; returns `path`."""
    path.write_bytes(picture(width, height, fmt, colour))
    return path


def draw_product(path: Path, colour: RGB, size: tuple[int, int] = (320, 240), quality: int = 90) -> Path:
    """A product-like JPEG: a `colour` ellipse filling the middle half of a light grey ground."""
    img = Image.new("RGB", size, (240, 240, 240))
    w, h = size
    ImageDraw.Draw(img).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=colour)
    img.save(path, "JPEG", quality=quality)
    return path


def numbered_products(folder: Path, n: int) -> list[str]:
    """`n` distinct 160x120 JPEGs `p00.jpg`... (picture i: a rectangle of its own colour and shape)."""
    folder.mkdir()
    names = []
    for i in range(n):
        img = Image.new("RGB", (160, 120), (235, 235, 235))
        colour = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)
        ImageDraw.Draw(img).rectangle((30 + i, 20, 120, 100 - i), fill=colour)
        img.save(folder / f"p{i:02d}.jpg", "JPEG", quality=90)
        names.append(f"p{i:02d}.jpg")
    return names


def random_products(folder: Path, n: int, seed: int = 1, size: int = 256) -> list[str]:
    """`n` distinct small product-like pictures (JPEG) in `folder`, drawn from `seed`; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = []
    for i in range(n):
        img = Image.new("RGB", (size, size), (238, 238, 236))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        box = [rng.randrange(20, 80), rng.randrange(20, 80), rng.randrange(170, 236), rng.randrange(170, 236)]
        (ImageDraw.Draw(img).ellipse if i % 2 else ImageDraw.Draw(img).rectangle)(box, fill=colour)
        name = f"p{i:05d}.jpg"
        img.save(folder / name, "JPEG", quality=80)
        names.append(name)
    return names


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A few dozen bytes of PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path
