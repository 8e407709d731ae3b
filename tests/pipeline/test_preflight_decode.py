"""Pictures are opened safely (review findings 12-14): only the formats the API or fit_inputs accept reach a
loader, and the header's size is checked before anything is decoded. The gallery decodes nothing preflight
refused."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from backdrop.errors import InputRejected
from backdrop.gallery.cards import build_cards
from backdrop.gallery.pictures import make_thumb
from backdrop.pipeline.preflight import MAX_PIXELS, MAX_SIDE, _check, prepare_input

ROOT = Path(__file__).resolve().parents[2]
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb(path: Path, side: int) -> Path:
    """A real RGB PNG of side x side black pixels (all its data present), compressed row by row."""
    comp, row = zlib.compressobj(9), b"\0" * (1 + 3 * side)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A few dozen bytes of PNG whose header claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13000 x 13000 px in about 500 KB: 507 MB once decoded (the review's gallery bomb)."""
    return write_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png", 13000)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every decode Pillow starts (ImageFile.load), as 'FORMAT WxH'."""
    seen: list[str] = []
    real = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        seen.append(f"{self.format} {self.width}x{self.height}")
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return seen


@pytest.fixture
def eps_plugin(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Calls into Pillow's EPS plugin (its format check and its opener): none may happen."""
    Image.init()
    calls: list[str] = []
    factory, accept = Image.OPEN["EPS"]

    def spy_factory(*a: Any, **k: Any) -> Any:
        calls.append("open")
        return factory(*a, **k)

    def spy_accept(prefix: bytes) -> Any:
        calls.append("accept")
        return accept(prefix) if accept else True

    monkeypatch.setitem(Image.OPEN, "EPS", (spy_factory, spy_accept))
    return calls


@pytest.mark.parametrize("fit", [False, True])
def test_an_eps_renamed_jpg_never_reaches_the_eps_loader(tmp_path: Path, fit: bool, eps_plugin: list[str]) -> None:
    # the spy works: without formats= Pillow does hand this file to the EPS plugin
    with contextlib.suppress(Exception), Image.open(io.BytesIO(EPS)) as im:
        im.load()  # fails one way or another: no Ghostscript here
    assert eps_plugin
    eps_plugin.clear()

    with pytest.raises(InputRejected) as info:
        _check(EPS, fit)
    assert info.value.report_code == "error_decode_image"
    assert "ghostscript" not in str(info.value).lower()
    assert eps_plugin == []


@pytest.mark.anyio
async def test_an_eps_renamed_jpg_is_one_rejected_row(tmp_path: Path, eps_plugin: list[str]) -> None:
    (tmp_path / "evil.jpg").write_bytes(EPS)
    with pytest.raises(InputRejected) as info:
        await prepare_input("evil.jpg", base_dir=tmp_path, staging_dir=tmp_path / "stage")
    assert info.value.report_code == "error_decode_image"
    assert "Ghostscript" not in str(info.value)
    assert eps_plugin == []
    assert not (tmp_path / "stage").exists()


@pytest.mark.parametrize(("fmt", "fit", "code"), [
    ("WEBP", False, "unsupported_format"), ("GIF", False, "unsupported_format"),
    ("BMP", False, "unsupported_format"), ("TIFF", False, "unsupported_format"),
    ("ICO", True, "error_decode_image"), ("PPM", True, "error_decode_image"),
    ("PCX", True, "error_decode_image"), ("TGA", True, "error_decode_image"),
])
def test_only_listed_formats_are_decoded(tmp_path: Path, fmt: str, fit: bool, code: str, loads: list[str]) -> None:
    path = tmp_path / f"p.{fmt.lower()}"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path, fmt)
    with pytest.raises(InputRejected) as info:
        _check(path.read_bytes(), fit)
    assert info.value.report_code == code
    assert loads == []  # no loader ran for a format nobody accepts


def test_a_13000px_png_is_refused_before_any_decode(bomb: Path, loads: list[str]) -> None:
    for fit in (False, True):
        with pytest.raises(InputRejected) as info:
            _check(bomb.read_bytes(), fit)
        assert info.value.report_code == "decompression_bomb"
        assert "13000x13000" in str(info.value)
    assert loads == []


@pytest.mark.parametrize(("side", "fit", "code"), [
    (8000, False, "decompression_bomb"),  # the review's finding 12: decoded in full, then refused for its size
    (8000, True, "decompression_bomb"),  # over the pixel ceiling: fit_inputs cannot take it either
    (5000, False, "error_exceed_max_image_size"),  # under the ceiling, over 4096 px: the header says so
])
def test_the_header_decides_before_any_decode(tmp_path: Path, side: int, fit: bool, code: str,
                                              loads: list[str]) -> None:
    data = write_bomb(tmp_path / "b.png", side).read_bytes()
    with pytest.raises(InputRejected) as info:
        _check(data, fit)
    assert info.value.report_code == code
    assert loads == []


def test_a_13000px_png_costs_no_memory_to_refuse(bomb: Path) -> None:
    """Measured in a fresh process: decoding it takes 507 MB; refusing it must take a few MB."""
    code = (
        "import json, resource, sys\n"
        "from backdrop.errors import InputRejected\nfrom backdrop.pipeline.preflight import _check\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "codes = []\n"
        "for fit in (False, True):\n"
        "    try:\n"
        "        _check(data, fit)\n"
        "    except InputRejected as exc:\n"
        "        codes.append(exc.report_code)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'codes': codes, 'grew_kb': after - before}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, cwd=ROOT,
                         check=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["codes"] == ["decompression_bomb", "decompression_bomb"]
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    assert got["grew_kb"] * unit / 1024 < 32 * 1024 * 1024 / 1024  # under 32 MB; a decode is 507 MB


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(1, 200_000), height=st.integers(1, 200_000), fit=st.booleans())
def test_no_header_over_the_limits_is_ever_decoded(width: int, height: int, fit: bool, loads: list[str]) -> None:
    loads.clear()
    over_pixels = width * height > MAX_PIXELS
    over_side = max(width, height) > MAX_SIDE and not fit
    try:
        _check(png_claiming(width, height), fit)
    except InputRejected as exc:
        if over_pixels:
            assert exc.report_code == "decompression_bomb"
        elif over_side:
            assert exc.report_code == "error_exceed_max_image_size"
    if over_pixels or over_side:
        assert loads == []


def test_a_big_jpeg_is_checked_at_a_reduced_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (90, 20, 200)).save(path, "JPEG")
    decoded: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        decoded.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    data, ctype, w, h, note = _check(path.read_bytes(), False)
    assert (data, ctype, w, h, note) == (path.read_bytes(), "image/jpeg", 4000, 3000, None)
    assert set(decoded) == {(500, 375)}  # 1/8 scale: 0.7 MB instead of 48 MB
    monkeypatch.setattr(ImageFile.ImageFile, "load", real)
    wide = tmp_path / "wide.jpg"
    Image.new("RGB", (10000, 3000), (90, 20, 200)).save(wide, "JPEG")
    decoded.clear()
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    _, ctype, w, h, note = _check(wide.read_bytes(), True)
    assert (ctype, w, h) == ("image/jpeg", 4096, 1229) and note == "downscaled 10000x3000 to 4096x1229"
    assert set(decoded) == {(5000, 1500)}  # decoded at 1/2, then resized: never the full 10000 px


def _report(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_the_gallery_never_thumbnails_an_input_preflight_refused(tmp_path: Path, bomb: Path,
                                                                 loads: list[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(bomb.read_bytes())
    (folder / "evil.jpg").write_bytes(EPS)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "wide.png")  # refused for another reason
    Image.new("RGB", (64, 48), (30, 30, 200)).save(folder / "good.png")
    out = tmp_path / "out"
    out.mkdir()
    df = _report([
        {"line": 1, "row_id": "bomb", "input": "bomb.png", "status": "failed", "failed_stage": "preflight",
         "error_code": "decompression_bomb"},
        {"line": 2, "row_id": "evil", "input": "evil.jpg", "status": "failed", "failed_stage": "preflight",
         "error_code": "error_decode_image"},
        {"line": 3, "row_id": "wide", "input": "wide.png", "status": "failed", "failed_stage": "preflight",
         "error_code": "error_exceed_max_image_size"},
        {"line": 4, "row_id": "good", "input": "good.png", "status": "failed", "failed_stage": "create",
         "error_code": "InvalidParameters"},
    ])
    cards = list(build_cards(df, out, str(folder / "batch.csv")))
    assert [c.before.thumb is None for c in cards] == [True, True, True, False]
    assert set(loads) == {"PNG 64x48"}  # the good row's picture only
    thumbs = sorted((out / ".backdrop" / "thumbs").iterdir())
    assert len(thumbs) == 1


def test_make_thumb_applies_the_pixel_ceiling_and_the_format_list(tmp_path: Path, bomb: Path,
                                                                 loads: list[str], eps_plugin: list[str]) -> None:
    """Even a picture that was not refused at preflight (a result, a kept candidate) is held to the same rules."""
    (tmp_path / "evil.jpg").write_bytes(EPS)
    assert make_thumb(bomb, tmp_path / "thumbs") is None
    assert make_thumb(tmp_path / "evil.jpg", tmp_path / "thumbs") is None
    assert loads == [] and eps_plugin == []
    assert not (tmp_path / "thumbs").exists()
