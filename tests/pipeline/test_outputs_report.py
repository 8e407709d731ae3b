"""Output names that cannot escape, the report's shape, formula escaping and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from backdrop.files import safe_stem
from backdrop.pipeline import plan
from backdrop.pipeline.inputs import InputRow
from backdrop.pipeline.plan import output_names
from backdrop.report.table import RowOutcome, build_report, escape_formula, summarize, write_report

HOSTILE = ["../../etc/passwd", "../x", "/abs/path", "/etc/passwd", "..", ".", ".hidden", "a/b\\c", "a/../../b",
           "", "é", "C:\\Windows\\x", "~/x"]


@pytest.mark.parametrize("row_id", HOSTILE)
def test_hostile_ids_stay_inside_the_output_folder(tmp_path: Path, row_id: str) -> None:
    rows = [InputRow(line=1, row_id=row_id, image_url="a.jpg", prompt="p", template_id=None)]
    path = output_names(rows, tmp_path)[1]
    assert path.parent == tmp_path
    assert path.resolve().parent == tmp_path.resolve()
    assert not path.name.startswith(".")


def test_hostile_ids_together_and_case_folded_get_distinct_files_inside(tmp_path: Path) -> None:
    ids = [*HOSTILE, "Mug", "mug", "MUG", "../Mug", "../mug"]
    rows = [InputRow(line=i, row_id=row_id, image_url="a.jpg", prompt="p", template_id=None)
            for i, row_id in enumerate(ids, start=1)]
    names = output_names(rows, tmp_path)
    assert len({p.name.casefold() for p in names.values()}) == len(ids)
    assert all(p.resolve().parent == tmp_path.resolve() for p in names.values())


def test_a_name_that_would_escape_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: were safe_stem ever to let a separator through, no name leaves the folder."""
    monkeypatch.setattr(plan, "safe_stem", lambda row_id: row_id)
    for row_id in ("../x", "/etc/passwd", "a/../../b"):
        rows = [InputRow(line=1, row_id=row_id, image_url="a.jpg", prompt="p", template_id=None)]
        with pytest.raises(ValueError, match="escapes the output folder"):
            output_names(rows, tmp_path)


def test_normal_ids_keep_their_names(tmp_path: Path) -> None:
    rows = [InputRow(line=i, row_id=row_id, image_url="a.jpg", prompt="p", template_id=None)
            for i, row_id in enumerate(["sku-1", "sku-2", "sku-1", "A.v2"], start=1)]
    assert output_names(rows, tmp_path) == {1: tmp_path / "sku-1.jpg", 2: tmp_path / "sku-2.jpg",
                                            3: tmp_path / "sku-1-line3.jpg", 4: tmp_path / "A.v2.jpg"}


def test_clean_ids_are_kept_and_changed_ids_do_not_collide() -> None:
    assert safe_stem("sku-123_A.v2") == "sku-123_A.v2"
    assert safe_stem("a/b") != safe_stem("a_b")


def test_repeated_ids_get_distinct_output_files(tmp_path: Path) -> None:
    rows = [InputRow(line=i, row_id="same", image_url="a.jpg", prompt="p", template_id=None)
            for i in (1, 2)]
    names = output_names(rows, tmp_path)
    assert names[1] != names[2]


def _outcomes() -> list[RowOutcome]:
    return [
        RowOutcome(line=2, row_id="b", input="b.jpg", prompt="=HYPERLINK(\"x\")", template_id=None,
                   status="failed", failed_stage="task", error_code="error_inference",
                   extra={"sku": "S2"}),
        RowOutcome(line=1, row_id="a", input="a.jpg", prompt="beach", template_id=None,
                   status="succeeded", units_charged=4, cost=0.22, extra={"sku": "S1"}),
    ]


def test_report_is_in_input_order_with_pass_through_columns_last() -> None:
    df = build_report(_outcomes())
    assert list(df["row_id"]) == ["a", "b"]
    assert df.columns[-1] == "sku" and list(df["sku"]) == ["S1", "S2"]


def test_summary_counts_units_against_failures() -> None:
    s = summarize(build_report(_outcomes()), unit_price=0.055, currency="USD", units_per_task=4)
    assert (s["rows"], s["succeeded"], s["failed"], s["units_charged"]) == (2, 1, 1, 4)
    assert s["rows_failed_not_charged"] == 1
    assert s["failures_by_code"] == {"error_inference": 1}
    assert s["cost"] == pytest.approx(0.22)


@pytest.mark.parametrize(("cell", "escaped"), [
    ('=HYPERLINK("x")', True), ("@SUM(A1)", True), ("+cmd|' /C calc'!A0", True), ("-2+3", True),
    ("\tx", True), ("-W8vzXJdkOZe74G1BYsVeB3oCtwCIzSvd", False), ("-4.5", False), ("+33", False),
    ("plain text", False),
])
def test_formula_escaping_leaves_ids_and_numbers_alone(cell: str, escaped: bool) -> None:
    """A vendor task id may start with `-`: it stays intact, as nothing in it can run."""
    assert escape_formula(cell) == ("'" + cell if escaped else cell)


def test_written_csv_escapes_formulas_and_parquet_keeps_values(tmp_path: Path) -> None:
    df = build_report(_outcomes())
    files = write_report(df, {"rows": 2}, tmp_path)
    text = Path(files["csv"]).read_text()
    assert "'=HYPERLINK" in text
    assert pd.read_parquet(files["parquet"])["prompt"].iloc[1] == '=HYPERLINK("x")'
    assert json.loads(Path(files["summary"]).read_text()) == {"rows": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
