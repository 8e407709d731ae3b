"""Preflight: every bad input gets a code, good ones are staged under their content hash."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from backdrop.errors import InputRejected
from backdrop.pipeline.preflight import prepare_input


def _img(path: Path, size: tuple[int, int], fmt: str, mode: str = "RGB") -> Path:
    Image.new(mode, size, (200, 30, 30) if mode == "RGB" else None).save(path, fmt)
    return path


async def _prep(source: str, base: Path, fit: bool = False) -> object:
    try:
        return await prepare_input(source, base_dir=base, staging_dir=base / "stage", fit_inputs=fit)
    except InputRejected as exc:
        return exc


@pytest.mark.anyio
async def test_good_jpeg_is_staged_under_its_sha256(tmp_path: Path) -> None:
    src = _img(tmp_path / "a.jpg", (640, 480), "JPEG")
    got = await _prep("a.jpg", tmp_path)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert (got.sha256, got.content_type, got.width, got.height, got.note) == (
        digest, "image/jpeg", 640, 480, None)
    assert Path(got.path).read_bytes() == src.read_bytes()
    assert Path(got.path).name == f"{digest}.jpg"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("../outside.jpg", "input_path_refused"),
        ("/etc/passwd", "input_path_refused"),
        ("file:///etc/passwd", "input_scheme_refused"),
        ("ftp://example.com/a.jpg", "input_scheme_refused"),
        ("missing.jpg", "input_not_found"),
        ("", "input_missing"),
    ],
)
async def test_sources_outside_the_folder_or_odd_schemes_are_refused(
    tmp_path: Path, source: str, code: str
) -> None:
    (tmp_path.parent / "outside.jpg").write_bytes(b"x")
    got = await _prep(source, tmp_path)
    assert isinstance(got, InputRejected) and got.report_code == code


@pytest.mark.anyio
async def test_not_an_image_and_truncated_image_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("hello")
    buf = io.BytesIO()
    Image.new("RGB", (400, 400), (1, 2, 3)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert (await _prep("t.txt", tmp_path)).report_code == "error_decode_image"
    assert (await _prep("cut.png", tmp_path)).report_code in ("input_truncated", "error_decode_image")


@pytest.mark.anyio
async def test_oversized_and_unsupported_are_rejected_unless_fit_inputs(tmp_path: Path) -> None:
    _img(tmp_path / "big.png", (5000, 100), "PNG")
    _img(tmp_path / "w.webp", (300, 200), "WEBP")
    assert (await _prep("big.png", tmp_path)).report_code == "error_exceed_max_image_size"
    assert (await _prep("w.webp", tmp_path)).report_code == "unsupported_format"
    big = await _prep("big.png", tmp_path, fit=True)
    assert (big.width, big.height) == (4096, 82) and "downscaled 5000x100" in big.note
    webp = await _prep("w.webp", tmp_path, fit=True)
    assert webp.content_type == "image/jpeg" and "re-encoded WEBP as JPEG" in webp.note
    with Image.open(webp.path) as im:
        assert (im.format, im.size) == ("JPEG", (300, 200))


@pytest.mark.anyio
async def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    # a tiny PNG whose header claims 20000x20000 pixels
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png", "PNG")
    got = await _prep("bomb.png", tmp_path, fit=True)
    assert isinstance(got, InputRejected) and got.report_code == "decompression_bomb"
