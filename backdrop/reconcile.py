"""Settling what the ledger cannot know alone, from the vendor's credit history.

Two questions, both answered from `GET /s2s/v1.0/client/credit/history` (`target_id` = task id):

1. A create whose answer was lost (`ambiguous`, or `creating` left by a crash): did the vendor make a task?
   Charges in the history that no ledger row knows ("orphans") are the candidates. Each is attributed by its
   picture (a result keeps its input's size and subject); see `reconcile_ambiguous`. What cannot be settled
   stays `pending_reconcile`, unless the policy allows one re-create, which the report flags as a possible
   duplicate charge. Pairing by time is never used: tasks finish out of order, and a wrong pair would hand one
   row another row's picture.
2. After a run: how many units did the vendor charge for this run's tasks, against what the report claims?
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from backdrop.client import BackdropClient
from backdrop.errors import BackdropError
from backdrop.ledger import Ledger, LedgerEntry

__all__ = ["AmbiguousPolicy", "Settlement", "reconcile_ambiguous", "vendor_units"]

AmbiguousPolicy = Literal["wait", "recreate_once"]
#: a charge can be recorded a little before the ledger row's time (clocks differ)
_CLOCK_SLACK = timedelta(minutes=5)


@dataclass
class Settlement:
    matched: dict[str, str] = field(default_factory=dict)  # content_key -> task id found
    not_created: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    recreate: list[str] = field(default_factory=list)  # unresolved, re-created under recreate_once
    orphans: list[str] = field(default_factory=list)  # charged task ids no row could claim


def _ambiguous(ledger: Ledger, environment: str, settle_after: float, now: datetime) -> list[LedgerEntry]:
    cutoff = now - timedelta(seconds=settle_after)
    rows = ledger.entries(environment=environment, statuses=("ambiguous", "creating"))
    return [e for e in rows if not e.task_id and e.updated_at.replace(tzinfo=e.updated_at.tzinfo or UTC) <= cutoff]


#: mean absolute difference (0-255) of the centres of an input and a result below which they may be a pair
_MATCH_THRESHOLD = 40.0
#: the best candidate must be clearly better than the next one
_MATCH_MARGIN = 0.6


def _fingerprint(data: bytes) -> tuple[tuple[int, int], np.ndarray]:
    """Size and a 16x16 grey thumbnail of the centre: the subject, which a background change keeps."""
    with Image.open(io.BytesIO(data)) as img:
        size = img.size
        w, h = size
        centre = img.convert("L").crop((w // 4, h // 4, w - w // 4, h - h // 4)).resize((16, 16))
        return size, np.asarray(centre, dtype=np.float32)


async def _result_fingerprint(client: BackdropClient, task_id: str, tmp: Path) -> Any:
    """The fingerprint of a charged task's result, or None if it cannot be fetched any more."""
    try:
        status = await client.get_task(task_id)
        if status.status != "success" or not status.result_url:
            return None
        got = await client.download(status.result_url, tmp / f"{task_id[:16]}.img")
        return _fingerprint(got.path.read_bytes())
    except (BackdropError, OSError):
        return None


def _best(candidates: list[tuple[float, LedgerEntry]]) -> LedgerEntry | None:
    ranked = sorted(candidates, key=lambda c: c[0])
    if not ranked or ranked[0][0] > _MATCH_THRESHOLD:
        return None
    if len(ranked) > 1 and ranked[0][0] > _MATCH_MARGIN * ranked[1][0]:
        return None  # two inputs look alike: do not guess
    return ranked[0][1]


async def reconcile_ambiguous(
    client: BackdropClient,
    ledger: Ledger,
    *,
    environment: str,
    settle_after: float,
    inputs: dict[str, str],
    policy: AmbiguousPolicy = "wait",
    now: datetime | None = None,
) -> Settlement:
    """Settle the ambiguous creates of `environment` older than `settle_after` whose input is in `inputs`.

    `inputs` maps image sha256 to the staged input picture. Each charge no ledger row knows is attributed by
    its picture: a result has its input's size and keeps its subject, so the one pending input of that size
    whose centre matches it (clearly better than any other) is its create. When every such charge was
    inspected and all that resemble none of our inputs are someone else's, the creates left over made no
    charge, so no success: they may be created again.
    """
    now = now or datetime.now(UTC)
    pending = [e for e in _ambiguous(ledger, environment, settle_after, now) if e.image_sha256 in inputs]
    result = Settlement()
    if not pending:
        return result
    since = min(e.created_at for e in pending).replace(tzinfo=UTC) - _CLOCK_SLACK
    history = await client.credit_history(since=since)
    known = ledger.known_task_ids()
    orphans = [e.target_id for e in history if e.target_id and e.units < 0 and e.target_id not in known]
    fingerprints = {e.image_sha256: _fingerprint(Path(inputs[e.image_sha256]).read_bytes()) for e in pending}
    left = list(pending)
    settled = True
    with tempfile.TemporaryDirectory(prefix="backdrop-reconcile-") as tmp:
        for task_id in orphans:
            found = await _result_fingerprint(client, task_id, Path(tmp))
            if found is None:
                settled = False  # a charge we cannot look at may be ours
                result.orphans.append(task_id)
                continue
            size, centre = found
            scored = [(float(np.abs(fingerprints[e.image_sha256][1] - centre).mean()), e)
                      for e in left if fingerprints[e.image_sha256][0] == size]
            entry = _best(scored)
            if entry is None:
                if any(score <= _MATCH_THRESHOLD for score, _ in scored):
                    settled = False  # looks like one of ours, but which one is unclear
                result.orphans.append(task_id)
                continue
            left.remove(entry)
            ledger.mark(entry.content_key, entry.attempt, status="created", task_id=task_id, error_code=None,
                        error_message="task id recovered from the credit history, matched by its picture")
            result.matched[entry.content_key] = task_id
    for entry in left:
        if settled:
            ledger.mark(entry.content_key, entry.attempt, status="failed", error_code="ambiguous_not_created",
                        error_message="no charge for this picture appeared after the lost create")
            result.not_created.append(entry.content_key)
            continue
        recreated_before = any(a.error_code == "ambiguous_recreated" for a in ledger.attempts(entry.content_key))
        if policy == "recreate_once" and not recreated_before:
            ledger.mark(entry.content_key, entry.attempt, status="failed", error_code="ambiguous_recreated",
                        error_message="could not tell whether the lost create was charged; re-created once "
                                      "under ambiguous_policy=recreate_once")
            result.recreate.append(entry.content_key)
        else:
            result.unresolved.append(entry.content_key)
    return result


async def vendor_units(client: BackdropClient, task_ids: set[str], since: datetime) -> float:
    """Units the vendor's credit history charged for `task_ids` since `since`."""
    if not task_ids:
        return 0.0
    history = await client.credit_history(since=since - _CLOCK_SLACK)
    return float(sum(-e.units for e in history if e.target_id in task_ids and e.units < 0))
