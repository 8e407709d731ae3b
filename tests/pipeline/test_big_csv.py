"""A big CSV, and the malformed files `test_inputs.py` does not cover yet."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from backdrop.errors import CsvError
from backdrop.pipeline.inputs import normalise_prompt, read_rows

N = 100_000


def _prompt(i: int) -> str:
    # every 1000th prompt holds a quoted newline and a comma: still one row per record
    return f"white marble, item {i}\nsecond line" if i % 1000 == 0 else f"beach {i}"


def _big_csv(path: Path, ragged_at: int | None = None) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "image_url", "prompt", "sku"])
        for i in range(N):
            row = [f"r{i:06d}", f"pics/{i}.jpg", _prompt(i), f"S-{i}"]
            out.writerow(row + ["extra"] if i + 1 == ragged_at else row)
    return path


def test_a_100k_row_csv_gives_one_row_per_record_with_its_id(tmp_path: Path) -> None:
    rows, base = read_rows(str(_big_csv(tmp_path / "big.csv")))

    assert base == tmp_path.resolve()
    assert len(rows) == N
    assert [r.line for r in rows] == list(range(1, N + 1))
    assert [r.row_id for r in rows] == [f"r{i:06d}" for i in range(N)]
    # the quoted multi-line cell is one prompt, normalised as it will be sent (its newline one space)
    assert [r.prompt for r in rows[999:1002]] == ["beach 999", normalise_prompt(_prompt(1000)), "beach 1001"]
    assert rows[1000].prompt == "white marble, item 1000 second line"
    last = rows[-1]
    assert (last.image_url, last.prompt, last.extra) == (f"pics/{N - 1}.jpg", f"beach {N - 1}",
                                                         {"sku": f"S-{N - 1}"})


def test_a_100k_row_csv_without_ids_gets_distinct_ids(tmp_path: Path) -> None:
    path = tmp_path / "noid.csv"
    path.write_text("image_url,prompt\n" + "".join(f"pics/{i}.jpg,beach\n" for i in range(N)))
    rows, _ = read_rows(str(path))
    assert len(rows) == N and len({r.row_id for r in rows}) == N
    assert all(r.row_id.startswith("row-") for r in rows)


def test_a_ragged_record_deep_in_a_big_csv_is_one_error_naming_it(tmp_path: Path) -> None:
    # 61 quoted newlines come before it: the number counts records, not physical lines
    with pytest.raises(CsvError, match="data line 60123 has 5 fields but the header has 4"):
        read_rows(str(_big_csv(tmp_path / "ragged.csv", ragged_at=60_123)))


def test_an_unterminated_quote_is_one_csv_error(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('id,image_url,prompt\na,a.jpg,"white marble\nb,b.jpg,beach\n')
    with pytest.raises(CsvError, match="cannot be parsed"):
        read_rows(str(path))


def test_a_short_record_keeps_its_row_with_empty_cells(tmp_path: Path) -> None:
    # spreadsheets drop trailing empty cells: the row stays; preflight reports its missing prompt
    path = tmp_path / "short.csv"
    path.write_text("id,image_url,prompt,sku\na,a.jpg,beach,S-1\nb,b.jpg\nc,c.jpg,studio,S-3\n")
    rows, _ = read_rows(str(path))
    assert [(r.line, r.row_id, r.prompt, r.extra) for r in rows] == [
        (1, "a", "beach", {"sku": "S-1"}),
        (2, "b", None, {"sku": ""}),
        (3, "c", "studio", {"sku": "S-3"}),
    ]


def test_blank_lines_and_crlf_endings_do_not_make_rows(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"id,image_url,prompt\r\n\r\na,a.jpg,beach\r\n\r\n\r\nb,b.jpg,studio\r\n")
    rows, _ = read_rows(str(path))
    assert [(r.line, r.row_id, r.prompt) for r in rows] == [(1, "a", "beach"), (2, "b", "studio")]
