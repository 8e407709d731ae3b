"""One batch of hostile rows: each is reported once with its own code; good rows still succeed."""

from __future__ import annotations

import http.server
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product, png_claiming, save_picture
from tests.support.loopback import serve

HYPERLINK = '=HYPERLINK("http://127.0.0.1/x","click")'
FORMATS = ("webp", "gif", "bmp", "tiff")
#: what fit_inputs=True says it changed, per row id
FIT_NOTES = {**{f"fmt-{f}": f"re-encoded {f.upper()} as JPEG" for f in FORMATS},
             "over-4096": "downscaled 5000x120 to 4096x98; re-encoded PNG as JPEG"}


class _Handler(http.server.BaseHTTPRequestHandler):
    picture = b""

    def do_GET(self) -> None:  # the stdlib's name
        if self.path == "/ok.jpg":
            self._answer(200, self.picture, "image/jpeg")
        elif self.path == "/to-ftp":
            self._answer(302, b"", "text/plain", location="ftp://127.0.0.1/pic.jpg")
        else:
            self._answer(404, b"not here", "text/plain")

    def _answer(self, status: int, body: bytes, ctype: str, location: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """A loopback server: /ok.jpg is a picture, /to-ftp redirects to ftp://, the rest is 404."""
    _Handler.picture = draw_product(tmp_path / "served.jpg", (30, 120, 200)).read_bytes()
    with serve(_Handler) as url:
        yield url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pictures(folder: Path) -> None:
    draw_product(folder / "good.jpg", (200, 30, 30))
    draw_product(folder / "twin-a.jpg", (30, 160, 30))
    draw_product(folder / "twin-b.jpg", (160, 30, 160))
    (folder / "text.jpg").write_text("just some text, not a picture")
    whole = draw_product(folder / "whole.jpg", (90, 90, 20)).read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    png_claiming(folder / "bomb.png", 100_000, 100_000)
    fat = draw_product(folder / "fat.jpg", (20, 90, 90)).read_bytes()
    (folder / "fat.jpg").write_bytes(fat + b"\0" * (10 * 1024 * 1024))  # decodes; over 10 MB
    save_picture(folder / "wide.png", 5000, 120, (200, 100, 40), "PNG")
    for i, fmt in enumerate(FORMATS):  # distinct pictures, so that each is its own paid content
        with Image.open(draw_product(folder / f"{fmt}.jpg", (120, 60 + 40 * i, 200))) as im:
            im.convert("RGB").save(folder / f"p.{fmt}")
    draw_product(folder.parent / "outside.jpg", (10, 10, 10))


def _cases(folder: Path, server: str) -> list[tuple[dict[str, str], str, str]]:
    """(row, error code, error code with fit_inputs); "" means succeeded."""

    def row(row_id: str, image: str, prompt: str = "white marble") -> dict[str, str]:
        return {"id": row_id, "image_url": image, "prompt": prompt, "title": row_id}

    good = {**row("good", "good.jpg"), "title": HYPERLINK}
    return [
        (good, "", ""),
        (row("good-url", f"{server}/ok.jpg"), "", ""),
        (row("unreachable", f"http://127.0.0.1:{_closed_port()}/a.jpg"), "input_unreachable",
         "input_unreachable"),
        (row("http-404", f"{server}/missing.jpg"), "input_http_error", "input_http_error"),
        (row("not-image", "text.jpg"), "error_decode_image", "error_decode_image"),
        (row("truncated", "cut.jpg"), "input_truncated", "input_truncated"),
        (row("bomb", "bomb.png"), "decompression_bomb", "decompression_bomb"),
        (row("over-10mb", "fat.jpg"), "exceed_max_filesize", ""),
        (row("over-4096", "wide.png"), "error_exceed_max_image_size", ""),
        *((row(f"fmt-{f}", f"p.{f}"), "unsupported_format", "") for f in FORMATS),
        (row("empty-prompt", "good.jpg", prompt=""), "prompt_missing", "prompt_missing"),
        (row("long-prompt", "good.jpg", prompt=("white marble " * 250)[:3000]), "prompt_too_long",
         "prompt_too_long"),
        (row("twin", "twin-a.jpg"), "", ""),
        (row("twin", "twin-b.jpg"), "", ""),
        (row("../escape", "good.jpg", prompt="sunny beach"), "", ""),
        (row(str(folder.parent / "abs-id"), "good.jpg", prompt="grey concrete"), "", ""),
        (row("file-url", f"file://{folder / 'good.jpg'}"), "input_scheme_refused",
         "input_scheme_refused"),
        (row("outside", "../outside.jpg"), "input_path_refused", "input_path_refused"),
        (row("to-ftp", f"{server}/to-ftp"), "input_scheme_refused", "input_scheme_refused"),
    ]


def _outcomes(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    codes = df["error_code"].fillna("") if df["error_code"].notna().any() else [""] * len(df)
    return list(zip(df["row_id"], df["status"], codes, strict=True))


def _want(cases: list[tuple[dict[str, str], str, str]], fit: bool) -> list[tuple[str, str, str]]:
    return [(r["id"], "failed" if (f if fit else c) else "succeeded", f if fit else c)
            for r, c, f in cases]


def test_hostile_rows_each_get_their_code_and_good_rows_succeed(
    pipeline_env: Any, tmp_path: Path, file_server: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _pictures(folder)
    cases = _cases(folder, file_server)
    rows = [r for r, _, _ in cases]
    out = tmp_path / "out"

    state, df = run_flow(csv=str(write_csv(folder, rows)), out=str(out))

    assert list(df["line"]) == list(range(1, len(rows) + 1))  # every row exactly once, in order
    assert _outcomes(df) == _want(cases, fit=False)
    assert set(df[df["status"] == "failed"]["failed_stage"]) == {"preflight"}
    assert set(df[df["status"] == "failed"]["units_charged"]) == {0}
    assert df.set_index("row_id").loc["http-404", "http_status"] == 404
    assert state.name == "Completed with failures"
    # one id on two pictures: two outputs, two files
    twins = df[df["row_id"] == "twin"]
    paths = [Path(p) for p in twins["output_path"]]
    assert [p.name for p in paths] == ["twin.jpg", f"twin-line{twins['line'].iloc[1]}.jpg"]
    assert paths[0].read_bytes() != paths[1].read_bytes()
    # ids that look like paths land inside the output folder, nowhere else
    for path in df["output_path"].dropna():
        assert Path(path).parent == out and Path(path).is_file()
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["outside.jpg", "served.jpg"]
    # a formula in a passed-through column: escaped in report.csv, raw in report.parquet
    assert df.loc[0, "title"] == "'" + HYPERLINK
    assert pd.read_parquet(out / "report.parquet").loc[0, "title"] == HYPERLINK

    # again with fit_inputs=True: the rows it can repair, and the first good row
    refit = [c for c in cases if c[0]["id"] in {*FIT_NOTES, "over-10mb", "good"}]
    csv = folder / "refit.csv"
    pd.DataFrame([r for r, _, _ in refit]).to_csv(csv, index=False)
    _, fitted = run_flow(csv=str(csv), out=str(tmp_path / "out-fit"), fit_inputs=True)

    assert _outcomes(fitted) == _want(refit, fit=True)
    notes = fitted.set_index("row_id")["note"]
    assert {k: notes[k] for k in FIT_NOTES} == FIT_NOTES
    for path in fitted[fitted["row_id"].str.startswith("fmt-")]["output_path"]:
        with Image.open(path) as im:
            im.load()
            assert (im.format, im.size) == ("JPEG", (320, 240))
    assert bool(fitted.set_index("row_id").loc["good", "reused"])  # paid for by the first run
