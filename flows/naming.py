"""Flow run names: a name the user typed is kept; otherwise the deployment, what the run reads, and when it ran.

    manual/products 2026-11-30 09:12Z          a batch over products.csv from the `manual` deployment
    local/dry-run products 2026-11-30 09:12Z   a dry run started by `backdrop run` (no deployment)
    cost-daily/cost 2026-11-01 to today 2026-11-30 06:30Z

Prefect calls these when the run starts and, without them, would keep the name the run was created with. A name
Prefect or its UI generated is two words joined by a hyphen, both lowercase ("crimson-wolf", Prefect and its V1
UI) or both capitalised ("Gorgeous-Puggle", what the V2 UI's Custom run form fills in): that one is replaced.
Anything else (a name typed in the Custom run form, or passed to the API) is the user's and is kept, so those two
spellings of two hyphenated words are the only typed names that Backdrop renames.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from prefect.context import get_run_context
from prefect.runtime import deployment

__all__ = ["batch_run_name", "cost_run_name", "is_generated"]

_LOWER = r"[^\W\d_A-Z]+"  # lowercase letters, accented ones too (the V2 UI's animals include "Vicuña")
_GENERATED = re.compile(rf"[a-z]+-[a-z]+|[A-Z]{_LOWER}-[A-Z]{_LOWER}")


def is_generated(name: str | None) -> bool:
    """True for a name Prefect (or its UI) made up, which Backdrop may replace."""
    return not name or _GENERATED.fullmatch(name) is not None


def _run() -> Any:
    return get_run_context().flow_run  # type: ignore[union-attr]


def _named(what: str) -> str:
    run = _run()
    if not is_generated(run.name):
        return str(run.name)
    when = (run.expected_start_time or datetime.now(UTC)).astimezone(UTC)
    return f"{deployment.name or 'local'}/{what} {when:%Y-%m-%d %H:%M}Z"


def batch_run_name() -> str:
    params = _run().parameters
    stem = PurePosixPath(urlsplit(str(params.get("csv") or "input")).path).stem[:60] or "input"
    return _named(f"dry-run {stem}" if params.get("dry_run") else stem)


def cost_run_name() -> str:
    params = _run().parameters
    return _named(f"cost {params.get('since') or 'period start'} to {params.get('until') or 'today'}")
