"""The row is the failure boundary: whatever a CSV cell holds, preflight answers a picture or a rejection.

Security review finding 6: a 300-character path (ENAMETOOLONG), a symlink loop (RuntimeError), `http://[::1`
(ValueError from urlparse) or a NUL byte (ValueError from resolve) used to escape `prepare_input` and sink the
whole batch. Hypothesis feeds thousands of generated cells; none may raise anything but InputRejected.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from backdrop.errors import InputRejected
from backdrop.pipeline.preflight import PreparedInput, prepare_input

#: the codes this boundary adds; their messages must never quote the cell
BOUNDARY_CODES = {"input_unreadable", "preflight_error"}


def _folder(root: Path) -> Path:
    """A CSV folder holding one good picture and every kind of trap a path can lead to."""
    folder = root / "csv"
    if folder.exists():
        return folder
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 40, 40)).save(folder / "good.jpg", "JPEG")
    (folder / "text.jpg").write_text("not a picture")
    os.symlink("loop.jpg", folder / "loop.jpg")  # a link to itself
    os.symlink("loop-b", folder / "loop-a")  # a two-link cycle
    os.symlink("loop-a", folder / "loop-b")
    os.symlink("missing.jpg", folder / "dangling.jpg")
    os.symlink("/etc/hostname", folder / "outside.jpg")
    os.symlink("../good.jpg", folder / "sub" / "up.jpg")
    return folder


_PICTURE: list[bytes] = []


def _vendor(request: httpx.Request) -> httpx.Response:
    """Every URL lands here (nothing leaves the machine): a picture, a 404, a redirect or a dead host."""
    host, path = request.url.host, request.url.path
    if host.startswith("down"):
        raise httpx.ConnectError("refused", request=request)
    if path.endswith("/redirect"):
        return httpx.Response(302, headers={"location": "ftp://elsewhere/x.jpg"})
    if path.endswith("ok.jpg"):
        return httpx.Response(200, content=_PICTURE[0], headers={"content-type": "image/jpeg"})
    return httpx.Response(404, content=b"no")


SEGMENTS = st.sampled_from([
    "..", ".", "", "good.jpg", "text.jpg", "loop.jpg", "loop-a", "dangling.jpg", "outside.jpg", "sub", "up.jpg",
    "a" * 300, "b" * 4096, "x\x00y", "\x00", "~", "$HOME", "%2e%2e", "con", "nul.jpg", "\\", "C:", "é.jpg",
    "\u202e", "\ufeff", "\r\n", "\t", " ", "?", "#", "*", "[", "]", "http:", "//", "\ufffd",
])
PATHS = st.lists(st.one_of(SEGMENTS, st.text(max_size=20)), min_size=1, max_size=8).map("/".join)
HOSTS = st.one_of(
    st.sampled_from(["[::1", "[::1]", "::1]", "[", "]", "127.0.0.1:99999", "host:port", "down.example", "ok",
                     "%zz", "a" * 300, "user:pw@ok", "[fe80::1%eth0]", "xn--", "-", ".", "..", "\x00", ""]),
    st.text(max_size=30),
)
URLS = st.builds(
    lambda scheme, sep, host, path: f"{scheme}{sep}{host}/{path}",
    st.sampled_from(["http", "https", "HTTP", "hTtPs", "ftp", "file", "data", "javascript", "c", "", "h\x00"]),
    st.sampled_from(["://", ":", ":/", ":///", "//", ""]),
    HOSTS,
    st.one_of(st.sampled_from(["ok.jpg", "redirect", "missing", "", "..", "%00", "a" * 5000]),
              st.text(max_size=30)),
)
HUGE = st.builds(lambda c, n: c * n, st.sampled_from(["a", "/", ".", "é", "\x00", "../"]),
                 st.integers(min_value=200, max_value=70_000))
CELLS = st.one_of(PATHS, URLS, HUGE, st.text(), st.text(alphabet=st.characters(max_codepoint=0x1F)),
                  st.binary(max_size=64).map(lambda b: b.decode("latin-1")))


def _prepare(cell: str, folder: Path, staging: Path) -> PreparedInput | InputRejected:
    async def go() -> PreparedInput | InputRejected:
        async with httpx.AsyncClient(transport=httpx.MockTransport(_vendor), follow_redirects=True) as http:
            try:
                return await prepare_input(cell, base_dir=folder, staging_dir=staging, http=http)
            except InputRejected as rejected:
                return rejected

    return asyncio.run(go())


def _check_answer(cell: str, answer: PreparedInput | InputRejected) -> None:
    assert isinstance(answer, (PreparedInput, InputRejected)), type(answer)
    if isinstance(answer, InputRejected):
        assert answer.report_code and answer.report_code != "backdrop_error"
        if answer.report_code in BOUNDARY_CODES:
            assert len(answer.message) < 120
            if len(cell) > 16:
                assert cell not in answer.message and cell[:16] not in answer.message


@pytest.mark.parametrize("cell, code", [
    ("a" * 300 + ".jpg", "input_unreadable"),  # ENAMETOOLONG from is_file()
    ("loop.jpg", "input_unreadable"),  # RuntimeError from resolve()
    ("loop-a", "input_unreadable"),
    ("http://[::1/x.jpg", "input_unreadable"),  # ValueError from urlparse
    ("x\x00.jpg", "input_unreadable"),  # ValueError: embedded null byte
    ("good.jpg", ""),
    ("sub/../good.jpg", ""),
])
def test_the_reviewed_cells_become_rejections(tmp_path: Path, cell: str, code: str) -> None:
    folder = _folder(tmp_path)
    answer = _prepare(cell, folder, tmp_path / "staging")
    _check_answer(cell, answer)
    if code:
        assert isinstance(answer, InputRejected) and answer.report_code == code, answer
        assert "a" * 20 not in answer.message and "\x00" not in answer.message
    else:
        assert isinstance(answer, PreparedInput) and (answer.width, answer.height) == (64, 48)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(cell=CELLS)
def test_any_cell_gives_a_picture_or_a_rejection(tmp_path: Path, cell: str) -> None:
    if not _PICTURE:
        img = tmp_path / "served.jpg"
        Image.new("RGB", (32, 32), (10, 120, 10)).save(img, "JPEG")
        _PICTURE.append(img.read_bytes())
    folder = _folder(tmp_path)
    _check_answer(cell, _prepare(cell, folder, tmp_path / "staging"))
