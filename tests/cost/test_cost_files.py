"""What the cost report writes: FOCUS and daily tables (CSV, Parquet), a PNG chart, JSON, markdown."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
from PIL import Image

from backdrop.cost import FOCUS_COLUMNS, build_cost_report, cost_markdown, write_cost_files
from backdrop.cost.chart import BAR, draw_units_chart
from backdrop.settings import BackdropSettings
from tests.cost.helpers import LedgerFiller, at, charge

NOV = (date(2026, 11, 1), date(2026, 11, 8))


def _report(filler: LedgerFiller, **settings: object) -> object:
    a = filler.add(at(2), "succeeded", units=4, deployment="=cmd|calc")  # a formula-like name
    filler.add(at(2), "succeeded", units=4)
    filler.add(at(4), "succeeded", units=12)
    filler.add(at(4), "failed")
    history = [charge(a, at(2, 12, 1)), charge("stranger", at(5))]
    return build_cost_report(filler.ledger, *NOV, BackdropSettings(unit_price=0.05, **settings),
                             history=history, balance=396, now=at(5))


def test_tables_are_written_as_csv_and_parquet(filler: LedgerFiller, tmp_path: Path) -> None:
    report = _report(filler)
    files = write_cost_files(report, tmp_path / "out")  # type: ignore[arg-type]
    focus = pd.read_parquet(files["focus_parquet"])
    assert list(focus.columns) == FOCUS_COLUMNS
    assert focus["ConsumedQuantity"].tolist() == [4, 4, 12]
    assert focus["BilledCost"].tolist() == [0.2, 0.2, 0.6]
    assert json.loads(focus["Tags"][0])["deployment"] == "=cmd|calc"  # Parquet keeps the raw text
    focus_csv = pd.read_csv(files["focus_csv"])
    assert json.loads(focus_csv["Tags"][0])["deployment"] == "=cmd|calc"  # JSON text starts with "{": safe
    daily = pd.read_csv(files["daily_csv"])
    assert daily["day"].tolist()[:3] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert daily["units"].tolist() == [0, 8, 0, 12, 0, 0, 0]
    assert pd.read_parquet(files["daily_parquet"])["vendor_units"].tolist() == [0, 4, 0, 0, 4, 0, 0]
    deployments = pd.read_csv(files["deployments_csv"])
    assert "'=cmd|calc" in deployments["deployment"].tolist()  # no formula reaches a spreadsheet
    summary = json.loads(Path(files["summary"]).read_text())
    assert summary["totals"] == {"created": 4, "succeeded": 3, "failed": 1, "pending": 0, "units": 20,
                                 "cost": 1.0, "vendor_units": 8.0}
    assert [u["task_id"] for u in summary["reconciliation"]["unknown_to_ledger"]] == ["stranger"]
    assert summary["files"]["chart"].endswith("cost_units_per_day.png")
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_chart_is_a_png_with_one_bar_per_day_that_spent(filler: LedgerFiller, tmp_path: Path) -> None:
    report = _report(filler)
    path = draw_units_chart(report.daily, tmp_path / "chart.png")  # type: ignore[attr-defined]
    with Image.open(path) as img:
        assert img.format == "PNG"
        rgb = img.convert("RGB")
    bars: list[list[int]] = []  # [first x, last x, height] of each run of columns holding bar pixels
    for x in range(rgb.width):
        height = sum(1 for y in range(rgb.height) if rgb.getpixel((x, y)) == BAR)
        if height and bars and bars[-1][1] == x - 1:
            bars[-1][1] = x
        elif height:
            bars.append([x, x, height])
    assert len(bars) == 2  # 2026-11-02 (8 units) and 2026-11-04 (12 units); five empty days draw nothing
    (x0, _, h8), (x1, _, h12) = bars
    assert abs(h12 / h8 - 12 / 8) < 0.05  # bars scale with units
    slot = (x1 - x0) / 2  # two days apart
    assert abs((x0 - 64) / slot - 1.0) < 0.3  # the first bar sits in the second day's slot


def test_chart_of_an_empty_period_still_draws(tmp_path: Path) -> None:
    empty = pd.DataFrame({"day": [date(2026, 11, 1)], "units": [0]})
    with Image.open(draw_units_chart(empty, tmp_path / "c.png")) as img:
        assert img.size[0] >= 360 and BAR not in {c for _, c in img.convert("RGB").getcolors(1 << 16)}


def test_markdown_has_totals_budget_day_bars_links_and_mismatches(
    filler: LedgerFiller, tmp_path: Path
) -> None:
    report = _report(filler, budget_units=40)
    files = write_cost_files(report, tmp_path)  # type: ignore[arg-type]
    md = cost_markdown(report, files)  # type: ignore[arg-type]
    assert "| 4 | 3 | 1 | 0 | 20 | 1.00 USD |" in md
    assert "**Balance now:** 396 units." in md
    assert "**over the alarm threshold**: 20 of 40 units used this month (50%)" in md  # 120 projected
    assert f"Chart file: `{tmp_path / 'cost_units_per_day.png'}`" in md and "file://" not in md
    assert "![units per day](data:image/jpeg;base64," in md  # the chart itself, inside the artifact
    assert "| 2026-11-04 | 2 | 1 | 1 | 0 | 12 | 0 | `" + "█" * 20 + "` |" in md
    assert "| 2026-11-02 | 2 | 2 | 0 | 0 | 8 | 4 | `" + "█" * 13 + "` |" in md
    assert "| `stranger` | 4 | 2026-11-05T12:00:00+00:00 |" in md
    assert "2 ledger charges not in the vendor's history" in md
    assert f"- focus_csv: `{files['focus_csv']}`" in md


def test_markdown_of_a_month_lists_only_the_days_with_activity(filler: LedgerFiller) -> None:
    filler.add(at(9), "succeeded", units=4)
    filler.add(at(20), "failed")
    report = build_cost_report(filler.ledger, date(2026, 11, 1), date(2026, 12, 1), BackdropSettings(),
                               now=at(25))
    md = cost_markdown(report)
    assert [line[2:12] for line in md.splitlines() if line.startswith("| 2026-")] == ["2026-11-09", "2026-11-20"]
    assert "(2 of 30 shown; cost_daily.csv has every day)" in md
    assert "## Vendor's credit history" not in md and "## Files" not in md and "Chart:" not in md
