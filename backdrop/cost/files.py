"""The cost report's files: the FOCUS, daily, per-run and per-deployment tables as CSV (formula-escaped) and
Parquet, the units chart as PNG and the summary as JSON, each written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from backdrop.cost.chart import draw_units_chart
from backdrop.cost.report import CostReport, days_as_text
from backdrop.files import atomic_write
from backdrop.report.table import escape_formula

__all__ = ["write_cost_files"]


def write_cost_files(report: CostReport, out_dir: Path) -> dict[str, str]:
    """Write the FOCUS rows and the daily, per-run and per-deployment tables (CSV and Parquet), the summary
    (JSON) and the chart (PNG) into `out_dir`; return their paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for name, df in (("focus", report.focus), ("daily", report.daily), ("runs", report.runs),
                     ("deployments", report.deployments)):
        frame = days_as_text(df)
        csv, parquet = out_dir / f"cost_{name}.csv", out_dir / f"cost_{name}.parquet"
        safe = frame.map(escape_formula) if not frame.empty else frame
        atomic_write(csv, lambda p, f=safe: f.to_csv(p, index=False))
        atomic_write(parquet, lambda p, f=frame: f.to_parquet(p, index=False))
        paths[f"{name}_csv"], paths[f"{name}_parquet"] = str(csv), str(parquet)
    chart = out_dir / "cost_units_per_day.png"
    atomic_write(chart, lambda p: draw_units_chart(report.daily, Path(p)))
    paths["chart"] = str(chart)
    summary = out_dir / "cost_summary.json"
    paths["summary"] = str(summary)
    body = json.dumps(report.summary(paths), indent=2, default=str)
    atomic_write(summary, lambda p: Path(p).write_text(body))
    return paths
