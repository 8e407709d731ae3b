"""CSV reading: one clear error for a bad file, one row per line for a good one."""

from __future__ import annotations

from pathlib import Path

import pytest

from backdrop.errors import CsvError
from backdrop.pipeline.inputs import read_rows
from tests.support.loopback import serve


def _csv(tmp_path: Path, text: str | bytes, name: str = "in.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def test_rows_keep_ids_prompts_and_pass_through_columns(tmp_path: Path) -> None:
    rows, base = read_rows(_csv(tmp_path, "id,image_url,prompt,sku\na1,mug.jpg,white marble,S-1\n"))
    assert base == tmp_path.resolve()
    assert [(r.line, r.row_id, r.image_url, r.prompt, r.template_id, r.extra) for r in rows] == [
        (1, "a1", "mug.jpg", "white marble", None, {"sku": "S-1"})
    ]


def test_missing_id_gets_a_stable_hash_of_image_and_prompt(tmp_path: Path) -> None:
    text = "image_url,prompt\nmug.jpg,beach\nmug.jpg,beach\nmug.jpg,studio\n"
    first, _ = read_rows(_csv(tmp_path, text))
    again, _ = read_rows(_csv(tmp_path, text, "copy.csv"))
    assert first[0].row_id == first[1].row_id == again[0].row_id
    assert first[0].row_id != first[2].row_id
    assert first[0].row_id.startswith("row-")


def test_bom_and_quoted_newlines_are_read(tmp_path: Path) -> None:
    text = '\ufeffid,image_url,prompt\nx,a.jpg,"two\nlines"\n'
    rows, _ = read_rows(_csv(tmp_path, text.encode("utf-8")))
    assert rows[0].row_id == "x" and rows[0].prompt == "two lines"  # one cell; normalised as it is sent


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"image_url,prompt\n", "no rows"),
        (b"url,prompt\na.jpg,x\n", "missing the column 'image_url'"),
        (b"image_url\na.jpg\n", "needs a 'prompt'"),
        (b"id,image_url,prompt\na,a.jpg,white marble, soft light\nb,b.jpg,x\n", "line 1 has 4 fields"),
        ("image_url,prompt\nä.jpg,é\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_csv_fails_with_one_clear_message(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(CsvError, match=message):
        read_rows(_csv(tmp_path, content))


def test_missing_file_is_a_csv_error(tmp_path: Path) -> None:
    with pytest.raises(CsvError, match="not found"):
        read_rows(str(tmp_path / "nope.csv"))


def test_a_missing_relative_csv_names_the_folder_it_looked_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """inbox-nightly before anyone drops a CSV: the one line says where (the worker's folder, not the user's)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inbox").mkdir()
    with pytest.raises(CsvError) as caught:
        read_rows("inbox/products.csv")
    message = caught.value.message
    assert "'inbox/products.csv'" in message and "'products.csv'" in message
    assert repr(str((tmp_path / "inbox").resolve())) in message and "\n" not in message


def test_prompt_override_replaces_prompts_and_templates(tmp_path: Path) -> None:
    rows, _ = read_rows(
        _csv(tmp_path, "image_url,prompt,template_id\na.jpg,x,studio_white\n"), prompt_override="beach"
    )
    assert (rows[0].prompt, rows[0].template_id) == ("beach", None)


def test_template_only_csv_needs_no_prompt_column(tmp_path: Path) -> None:
    rows, _ = read_rows(_csv(tmp_path, "image_url,template_id\na.jpg,studio_white\n"))
    assert (rows[0].prompt, rows[0].template_id) == (None, "studio_white")


def test_csv_from_a_url_keeps_remote_image_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV served over HTTP (here by a tiny loopback server, allowed explicitly) is read; its rows have no
    local folder."""
    import http.server

    monkeypatch.setenv("BACKDROP_CSV_URL_SCHEMES", "http")
    monkeypatch.setenv("BACKDROP_CSV_URL_HOSTS", "127.0.0.1")
    monkeypatch.setenv("BACKDROP_FETCH_ALLOW_NETWORKS", "127.0.0.1/32")

    (tmp_path / "in.csv").write_text("id,image_url,prompt\na,https://example.com/a.jpg,beach\n")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    with serve(handler) as web:
        rows, base = read_rows(f"{web}/in.csv")
        missing = f"{web}/nope.csv"
        with pytest.raises(CsvError, match="404"):
            read_rows(missing)
    assert base is None and rows[0].image_url == "https://example.com/a.jpg"
