"""Upgrading Backdrop never pays again for a picture paid under the old content keys."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from backdrop.identity import CACHE_VERSION, legacy_environment_id
from backdrop.pipeline.steps import file_sha256
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger, default_ledger_url
from backdrop.store.schema import work
from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


def _old_key(environment: str, image_sha256: str, prompt: str) -> str:
    """The content key as the previous release computed it: the prompt as written, the old account id."""
    parts = [CACHE_VERSION, environment, image_sha256, "prompt", prompt, ""]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def test_a_ledger_from_before_the_new_keys_is_moved_and_nothing_is_paid_again(
    pipeline_env: Any, tmp_path: Path
) -> None:
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    csv = write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])
    _, first = run_flow(csv=str(csv), out=str(tmp_path / "out"))
    assert len(pipeline_env.tasks()) == 1
    # rewrite the ledger as the previous release left it: old account id, prompt hashed as written ("beach  ")
    ledger = Ledger(default_ledger_url())
    [row] = ledger.entries()
    old_env = legacy_environment_id(BackdropSettings())
    with ledger.engine.begin() as conn:
        conn.execute(work.delete())
        values = {k: getattr(row, k) for k in ("attempt", "status", "task_id", "units", "charged_run_id",
                                               "output_path", "output_sha256", "width", "height", "image_sha256")}
        conn.execute(insert(work).values(
            **values, environment=old_env, prompt="beach  ", row_id="a",
            content_key=_old_key(old_env, row.image_sha256 or "", "beach  "),
            created_at=datetime.now(UTC), updated_at=datetime.now(UTC), reported_at=datetime.now(UTC)))
    _, second = run_flow(csv=str(csv), out=str(tmp_path / "out2"))
    assert second.loc[0, "status"] == "succeeded" and bool(second.loc[0, "reused"])
    assert second.loc[0, "units_charged"] == 0 and len(pipeline_env.tasks()) == 1  # nothing paid again
    assert file_sha256(Path(second.loc[0, "output_path"])) == first.loc[0, "output_sha256"]
    assert {e.environment for e in ledger.entries()} != {old_env}
