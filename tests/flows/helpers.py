"""Plain helpers for the flow tests: a batch CSV, and one run of the flow with its report read back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["run_flow", "write_csv"]


def write_csv(folder: Path, rows: list[dict[str, str]]) -> Path:
    path = folder / "batch.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run_flow(**params: Any) -> tuple[Any, pd.DataFrame]:
    from flows.change_backgrounds import change_backgrounds

    state = asyncio.run(change_backgrounds(**params, return_state=True))
    summary = state.result()
    return state, pd.read_csv(summary["files"]["csv"], dtype={"http_status": "Int64"})
