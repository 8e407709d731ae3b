"""The batch report: one line per input row, a summary, and the files they are written to. Pure pandas."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from backdrop.files import atomic_write

__all__ = ["RowOutcome", "STATUSES", "build_report", "summarize", "write_report", "write_summary",
           "escape_formula"]

#: not_attempted: the run stopped (cancelled, SIGTERM, a crash) before this row finished; its report is still written
STATUSES = ("succeeded", "failed", "skipped", "pending_reconcile", "not_attempted")

#: report columns, in order; passed-through CSV columns follow them
COLUMNS = [
    "line", "row_id", "input", "prompt", "template_id", "status", "failed_stage", "error_code",
    "error_message", "http_status", "task_id", "request_id", "attempts", "polls", "started_at",
    "finished_at", "seconds", "units_charged", "cost", "output_path", "output_format", "output_sha256", "width",
    "height", "input_sha256", "reused", "duplicate_of", "possible_duplicate", "note",
]


@dataclass
class RowOutcome:
    """What happened to one input row."""

    line: int
    row_id: str
    input: str
    prompt: str | None
    template_id: str | None
    status: str = "skipped"
    failed_stage: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    http_status: int | None = None
    task_id: str | None = None
    request_id: str | None = None
    attempts: int = 0
    polls: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    units_charged: int = 0
    cost: float = 0.0
    output_path: str | None = None
    output_format: str | None = None
    output_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    input_sha256: str | None = None
    reused: bool = False
    duplicate_of: str | None = None
    possible_duplicate: bool = False
    note: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def build_report(outcomes: list[RowOutcome]) -> pd.DataFrame:
    """One DataFrame row per outcome, in input order, with the passed-through columns last."""
    records = []
    for o in sorted(outcomes, key=lambda o: o.line):
        rec = asdict(o)
        extra = rec.pop("extra")
        for k, v in extra.items():
            rec[k if k not in rec else f"csv_{k}"] = v
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    for col in ("http_status", "width", "height"):
        df[col] = df[col].astype("Int64")
    return df


def summarize(
    df: pd.DataFrame, *, unit_price: float, currency: str, units_per_task: int
) -> dict[str, Any]:
    """Totals for people and dashboards: counts by status, units charged versus failed, cost."""
    counts = Counter(df["status"]) if not df.empty else Counter()
    failed = df[df["status"] == "failed"] if not df.empty else df
    units = int(df["units_charged"].sum()) if not df.empty else 0
    return {
        "rows": int(len(df)),
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "pending_reconcile": counts.get("pending_reconcile", 0),
        "not_attempted": counts.get("not_attempted", 0),
        "reused": int(df["reused"].sum()) if not df.empty else 0,
        "possible_duplicates": int(df["possible_duplicate"].sum()) if not df.empty else 0,
        "units_charged": units,
        "rows_charged": int((df["units_charged"] > 0).sum()) if not df.empty else 0,
        "rows_failed_not_charged": int((failed["units_charged"] == 0).sum()) if len(failed) else 0,
        "cost": round(units * unit_price, 4),
        "unit_price": unit_price,
        "currency": currency,
        "units_per_task": units_per_task,
        "failures_by_code": dict(Counter(failed["error_code"].fillna("unknown"))) if len(failed) else {},
    }


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


#: `-` or `+` then only letters, digits, `_`, `.` and `-`: a vendor id such as `-W8vz...` or a signed number,
#: which a spreadsheet cannot run as anything (no operator, call or DDE link); prefixing it would corrupt it
_PLAIN_SIGNED = re.compile(r"[+-][A-Za-z0-9_.-]*")


def escape_formula(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text cells (CSV injection): prefix them with a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_SIGNED.fullmatch(value):
        return "'" + value
    return value


def write_report(df: pd.DataFrame, summary: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Write report.csv, report.parquet and summary.json into `out_dir`; return their paths."""
    paths = {
        "csv": out_dir / "report.csv",
        "parquet": out_dir / "report.parquet",
        "summary": out_dir / "summary.json",
    }
    safe = df.map(escape_formula) if not df.empty else df
    # pass-through column names come from the CSV's header: escaped like values (a name can be a formula too)
    safe = safe.rename(columns=lambda c: escape_formula(str(c)))
    atomic_write(paths["csv"], lambda p: safe.to_csv(p, index=False))
    atomic_write(paths["parquet"], lambda p: df.to_parquet(p, index=False))
    write_summary(summary, out_dir)
    return {k: str(v) for k, v in paths.items()}


def write_summary(summary: dict[str, Any], out_dir: Path) -> Path:
    """Write summary.json into `out_dir` atomically."""
    path = out_dir / "summary.json"
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(summary, indent=2, default=str)))
    return path
