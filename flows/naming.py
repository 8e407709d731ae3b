"""Flow run names: a name the user typed is kept; otherwise the deployment, what the run reads, and when it ran.

    manual/products 2026-11-30 09:12Z          a batch over products.csv from the `manual` deployment
    local/dry-run products 2026-11-30 09:12Z   a dry run started by `backdrop run` (no deployment)
    cost-daily/cost 2026-11-01 to today 2026-11-30 06:30Z

Prefect calls these when the run starts and, without them, would keep the name the run was created with. A name
Prefect or its UI generated is two words joined by a hyphen: both lowercase ("crimson-wolf", Prefect and its V1
UI), or one of the V2 UI's 17 adjectives and a capitalised animal of at most 6 letters ("Gorgeous-Puggle", what
its Custom run form fills in; a test reads both lists from the installed UI): that one is replaced. Anything else
(a name typed in the Custom run form, or passed to the API: "Spring-Catalogue", "Black-Friday") is the user's and
is kept, so two lowercase hyphenated words, or a name the V2 form could have made up, are the only typed names
that Backdrop renames.
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

#: the V2 UI's run-form adjectives (Prefect 3.8's bundle); its animals there have at most 6 letters, accented ones
#: too ("Vicuña")
_V2_ADJECTIVES = ("Awesome", "Rustic", "Small", "Gorgeous", "Fantastic", "Sleek", "Intelligent", "Unbranded",
                  "Refined", "Licensed", "Generic", "Practical", "Ergonomic", "Handcrafted", "Tasty", "Handmade",
                  "Incredible")
_GENERATED = re.compile(rf"[a-z]+-[a-z]+|(?:{'|'.join(_V2_ADJECTIVES)})-[A-Z][^\W\d_A-Z]{{0,5}}")


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
