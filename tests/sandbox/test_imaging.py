"""The sandbox's picture composer and the demo product photos."""

from __future__ import annotations

import csv
import io
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from backdrop.sandbox.imaging import TEMPLATES, ImageDecodeError, compose

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "backdrop" / "demo"
PRODUCT = (30, 90, 160)
STUDIO = (238, 238, 235)


def photo(size: tuple[int, int] = (640, 480), fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """A blue oval product with a red cap on a light studio background."""
    w, h = size
    img = Image.new("RGB", size, STUDIO)
    pen = ImageDraw.Draw(img)
    pen.ellipse((w * 0.3, h * 0.25, w * 0.7, h * 0.85), fill=PRODUCT)
    pen.rectangle((w * 0.45, h * 0.12, w * 0.55, h * 0.3), fill=(200, 60, 40))
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def pixels(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    return np.asarray(img.convert("RGB"), dtype=np.float32)


def centre(a: np.ndarray, frac: float = 0.1) -> np.ndarray:
    h, w = a.shape[:2]
    dy, dx = int(h * frac / 2), int(w * frac / 2)
    cy, cx = h // 2 + h // 10, w // 2
    return a[cy - dy : cy + dy, cx - dx : cx + dx].reshape(-1, 3)


def border(a: np.ndarray, width: int = 8) -> np.ndarray:
    return np.concatenate([a[:width].reshape(-1, 3), a[-width:].reshape(-1, 3),
                           a[:, :width].reshape(-1, 3), a[:, -width:].reshape(-1, 3)])


@pytest.mark.parametrize(
    "size,fmt", [((640, 480), "JPEG"), ((333, 517), "PNG"), ((1024, 1024), "JPEG")]
)
def test_output_is_a_jpeg_of_the_input_size(size: tuple[int, int], fmt: str) -> None:
    out = compose(photo(size, fmt), prompt="studio grey sweep")
    img = Image.open(io.BytesIO(out))
    assert (img.format, img.size, img.mode) == ("JPEG", size, "RGB")


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (96, 64)])
def test_a_plain_picture_becomes_all_backdrop(size: tuple[int, int]) -> None:
    buf = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buf, "JPEG")
    out = pixels(compose(buf.getvalue(), template_id="studio_white"))
    assert out.shape == (size[1], size[0], 3) and out.mean() > 200


def test_large_input_keeps_its_size() -> None:
    out = compose(photo((4096, 3072)), prompt="white marble")
    assert Image.open(io.BytesIO(out)).size == (4096, 3072)


def test_same_input_and_prompt_give_the_same_bytes() -> None:
    data = photo()
    for prompt in ["sandy beach at sunset", "grey concrete", "warm bokeh lights", "something odd"]:
        assert compose(data, prompt=prompt) == compose(data, prompt=prompt)
    assert compose(data, prompt="red backdrop") != compose(data, prompt="blue backdrop")


def test_the_subject_survives() -> None:
    data = photo()
    before = pixels(data)
    for prompt in ["red backdrop", "light oak wood table", "black marble"]:
        after = pixels(compose(data, prompt=prompt))
        assert np.abs(centre(after) - centre(before)).mean() < 6
        assert np.abs(centre(after).mean(axis=0) - PRODUCT).max() < 8


@pytest.mark.parametrize(
    "prompt,channel", [("red backdrop", 0), ("green wall", 1), ("navy blue", 2)]
)
def test_the_background_takes_the_prompt_colour(prompt: str, channel: int) -> None:
    edge = border(pixels(compose(photo(), prompt=prompt))).mean(axis=0)
    others = [edge[c] for c in range(3) if c != channel]
    assert edge[channel] > max(others) + 40, edge
    assert np.abs(border(pixels(photo())).mean(axis=0) - edge).max() > 60  # not the old studio grey


def test_light_and_dark_words_shift_the_colour() -> None:
    def level(prompt: str) -> float:
        return float(border(pixels(compose(photo(), prompt=prompt))).mean())

    assert level("dark blue") < level("blue") < level("light blue")
    assert level("black backdrop") < 40 < 220 < level("white backdrop")


def test_unknown_prompt_gets_a_stable_colour_of_its_own() -> None:
    data = photo()
    a, b = (border(pixels(compose(data, prompt=p))).mean(axis=0) for p in ["zorblax", "quux vibes"])
    assert np.abs(a - b).max() > 10
    assert compose(data, prompt="zorblax") == compose(data, prompt="zorblax")


def test_a_missing_prompt_gets_a_light_studio_backdrop() -> None:
    edge = border(pixels(compose(photo(), prompt=None)))
    assert 120 < edge.mean() < 235 and np.ptp(edge.mean(axis=0)) < 8
    assert compose(photo(), prompt="") == compose(photo(), prompt=None)


TEXTURES = ["white marble", "light oak wood", "sandy beach", "studio sweep", "grey concrete",
            "warm bokeh lights", "green grass", "sunset gradient", "cherry blossom", "plain beige"]


def test_each_texture_keyword_gives_a_different_picture() -> None:
    data = photo((400, 300))
    outs = {t: pixels(compose(data, prompt=t)) for t in TEXTURES}
    for (ta, a), (tb, b) in itertools.combinations(outs.items(), 2):
        assert np.abs(border(a) - border(b)).mean() > 8, (ta, tb)
    for t in ["white marble", "light oak wood", "grey concrete", "warm bokeh lights", "green grass",
              "cherry blossom"]:
        assert detail(outs[t]) > 1.5, t  # a texture, not a smooth colour
    assert detail(outs["plain beige"]) < 0.6 and detail(outs["studio sweep"]) < 0.6


def detail(a: np.ndarray) -> float:
    """Mean neighbour difference in the top rows (above the product): high for textures."""
    top = a[: a.shape[0] // 10]
    return float(np.abs(np.diff(top, axis=1)).mean() + np.abs(np.diff(top, axis=0)).mean())


def test_templates_are_listed_with_the_documented_keys() -> None:
    assert 10 <= len(TEMPLATES) <= 16
    ids = [t["id"] for t in TEMPLATES]
    assert len(set(ids)) == len(ids) and "nature_cherryblossom" in ids
    for t in TEMPLATES:
        assert set(t) == {"id", "title", "category_name"}
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", t["id"]) and t["title"] and t["category_name"]


def test_a_template_picks_its_backdrop_and_ignores_the_prompt() -> None:
    data = photo((320, 240))
    white = compose(data, template_id="studio_white")
    assert white == compose(data, prompt="red backdrop", template_id="studio_white")
    assert white != compose(data, template_id="marble_black")
    assert border(pixels(white)).mean() > 190
    assert border(pixels(compose(data, template_id="marble_black"))).mean() < 80
    outs = {t["id"]: compose(data, template_id=t["id"]) for t in TEMPLATES}
    assert len(set(outs.values())) == len(TEMPLATES)


def test_an_unknown_template_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown template_id") as info:
        compose(photo(), template_id="nope")
    assert not isinstance(info.value, ImageDecodeError)


def test_rgba_transparency_is_the_matte() -> None:
    img = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((100, 50, 200, 150), fill=(250, 250, 250, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = pixels(compose(buf.getvalue(), prompt="red backdrop"))
    assert out.shape == (200, 300, 3)
    assert np.abs(out[90:110, 140:160].mean(axis=(0, 1)) - 250).max() < 6  # white on white survives
    assert out[5:20, 5:20].mean(axis=(0, 1))[0] > 150 > out[5:20, 5:20].mean(axis=(0, 1))[1] + 60


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA"])
def test_png_modes_are_accepted(mode: str) -> None:
    data = photo((300, 200), "PNG", mode)
    out = pixels(compose(data, prompt="red backdrop"))
    assert out.shape == (200, 300, 3)
    assert out[:10].mean(axis=(0, 1))[0] > out[:10].mean(axis=(0, 1))[1] + 60


def test_palette_png_with_a_transparent_index() -> None:
    img = Image.new("P", (200, 200), 0)
    img.putpalette([0, 0, 0, 20, 160, 60] + [0] * 762)
    ImageDraw.Draw(img).ellipse((50, 50, 150, 150), fill=1)
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    out = pixels(compose(buf.getvalue(), prompt="white backdrop"))
    assert np.abs(out[95:105, 95:105].mean(axis=(0, 1)) - (20, 160, 60)).max() < 10
    assert out[:8].mean() > 200  # transparent black became the white backdrop


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (300, 200), STUDIO)
    ImageDraw.Draw(img).rectangle((20, 70, 120, 130), fill=PRODUCT)  # left of centre
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    out = pixels(compose(buf.getvalue(), prompt="black backdrop"))
    assert out.shape == (300, 200, 3)
    top, bottom = out[30:110, 80:120].mean(), out[200:280, 80:120].mean()
    assert top > 60 > bottom  # the product moved to the top after rotation


@pytest.mark.parametrize(
    "data",
    [b"", b"definitely not an image", photo()[:400], photo((64, 64), "GIF")],
    ids=["empty", "text", "truncated-jpeg", "gif"],
)
def test_non_images_raise_image_decode_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        compose(data, prompt="red")


def demo_rows() -> list[dict[str, str]]:
    with open(DEMO / "products.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_demo_csv_lists_the_demo_photos() -> None:
    rows = demo_rows()
    assert 12 <= len(rows) <= 16
    assert list(rows[0]) == ["id", "image_url", "prompt", "sku", "title"]
    assert len({r["id"] for r in rows}) == len({r["prompt"] for r in rows}) == len(rows)
    total = 0
    for r in rows:
        path = DEMO / r["image_url"]
        with Image.open(path) as img:
            assert img.format == "JPEG" and all(800 <= side <= 1200 for side in img.size), r
        assert r["sku"] and r["title"]
        total += path.stat().st_size
    assert total < 3_000_000
    assert sorted(p.name for p in DEMO.glob("*.jpg")) == sorted(r["image_url"] for r in rows)


def test_demo_photos_are_cut_out_cleanly() -> None:
    for r in demo_rows():
        out = pixels(compose((DEMO / r["image_url"]).read_bytes(), prompt="black backdrop"))
        assert border(out, 4).mean() < 45, r["id"]  # no studio grey left at the edges
        subject = (out.max(axis=2) > 90).mean()
        assert 0.04 < subject < 0.6, (r["id"], subject)


def test_demo_script_is_deterministic(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_images.py"), str(tmp_path)],
                   check=True, capture_output=True)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in DEMO.iterdir() if p.suffix in {".jpg", ".csv"})
    for name in written:
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), name
