"""Output files take the extension of their bytes: planned names stay distinct whatever extensions they end with,
copies (duplicate rows, reuse) follow the picture's format, and the report says which format each row got."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from backdrop.pipeline.inputs import InputRow
from backdrop.pipeline.outcomes import ItemResult, copy_duplicate_outputs, named_like, output_format_of
from backdrop.pipeline.plan import WorkItem, output_names
from backdrop.pipeline.preflight import PreparedInput
from backdrop.report.table import COLUMNS, RowOutcome, build_report

EXTS = (".jpg", ".png", ".webp")


def picture(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buf, fmt)
    return buf.getvalue()


@given(st.lists(st.text(max_size=12), min_size=1, max_size=25), st.data())
def test_names_stay_distinct_whatever_extension_each_file_takes(ids: list[str], data: st.DataObject) -> None:
    out = Path("/tmp/out")  # never written: names only
    rows = [InputRow(line=i, row_id=row_id, image_url="a.jpg", prompt="p", template_id=None)
            for i, row_id in enumerate(ids, start=1)]
    planned = output_names(rows, out)
    real = [p.with_suffix(data.draw(st.sampled_from(EXTS))) for p in planned.values()]
    assert len({p.name.casefold() for p in real}) == len(rows)
    assert all(p.parent == out for p in real)
    # the stem is the planned one: only the placeholder extension changed
    assert [p.stem for p in real] == [p.stem for p in planned.values()]


def test_no_row_can_take_the_contact_sheets_name(tmp_path: Path) -> None:
    rows = [InputRow(line=i, row_id=row_id, image_url="a.jpg", prompt="p", template_id=None)
            for i, row_id in ((1, "contact-sheet"), (2, "Contact-Sheet"), (3, "contact-sheet-line1"))]
    names = output_names(rows, tmp_path)
    real = {line: p.with_suffix(".png").name for line, p in names.items()}  # PNG results
    assert "contact-sheet.png" not in {n.casefold() for n in real.values()}
    assert len(set(real.values())) == 3


def test_output_format_of_sniffs_the_bytes_not_the_name(tmp_path: Path) -> None:
    for fmt, name in (("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")):
        misnamed = tmp_path / f"x-{name}.jpg"
        misnamed.write_bytes(picture(fmt))
        assert output_format_of(misnamed) == name
    (tmp_path / "x.bin").write_bytes(b"GIF89a....")
    assert output_format_of(tmp_path / "x.bin") is None
    assert output_format_of(tmp_path / "absent.png") is None


def test_a_copy_takes_the_pictures_extension_even_from_a_misnamed_file(tmp_path: Path) -> None:
    old = tmp_path / "old" / "mug.jpg"  # an older run saved PNG bytes as .jpg
    old.parent.mkdir()
    old.write_bytes(picture("PNG"))
    assert named_like(tmp_path / "new" / "mug.jpg", old) == (tmp_path / "new" / "mug.png", "png")
    webp = tmp_path / "old" / "cup.webp"
    webp.write_bytes(picture("WEBP"))
    assert named_like(tmp_path / "cup-line3.jpg", webp) == (tmp_path / "cup-line3.webp", "webp")


def test_duplicate_rows_copies_take_the_same_extension(tmp_path: Path) -> None:
    rows = [InputRow(line=i, row_id=row_id, image_url="a.jpg", prompt="p", template_id=None)
            for i, row_id in ((1, "mug"), (2, "mug-again"), (3, "Mug"))]
    names = output_names(rows, tmp_path)
    first = names[1].with_suffix(".webp")
    first.write_bytes(picture("WEBP"))
    prepared = PreparedInput(path=str(tmp_path / "a.jpg"), sha256="0" * 64, content_type="image/jpeg",
                             width=8, height=6, size=10)
    item = WorkItem(key="k", prepared=prepared, source="a.jpg", task_type="prompt", prompt="p",
                    template_id=None, rows=rows)
    res = ItemResult(status="succeeded", output_path=str(first), output_format="webp", units=4)
    copies = copy_duplicate_outputs([(item, res)], names)
    assert {line: Path(c.output_path or "").name for line, c in copies.items()} == {
        2: "mug-again.webp", 3: "Mug-line3.webp"}
    assert all(c.output_format == "webp" for c in copies.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Mug-line3.webp", "mug-again.webp", "mug.webp"]


def test_the_report_has_an_output_format_column_beside_the_path() -> None:
    assert COLUMNS[COLUMNS.index("output_path") + 1] == "output_format"
    df = build_report([RowOutcome(line=1, row_id="a", input="a.jpg", prompt="p", template_id=None,
                                  status="succeeded", output_path="/o/a.png", output_format="png")])
    assert list(df.columns[:len(COLUMNS)]) == COLUMNS
    assert df.at[0, "output_format"] == "png"
