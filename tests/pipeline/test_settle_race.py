"""Settling a lost create never overwrites a create another run sends while the settling reads the vendor's history.

Run X (another host) claimed the picture and waited in the rate limiter past the lost-create window; run Y reads the
ledger, finds the claim lost, and reads the credit history. X's slot comes meanwhile: its claim is touched and its
create leaves. The history Y read holds no charge of X's (not made yet): Y's "not created" would let a next attempt
pay for the picture again. Found by an adversarial review; the verdict is now a compare-and-set on Y's read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from backdrop.client.models import CreditHistoryEntry
from backdrop.pipeline import reconcile
from backdrop.pipeline.evidence import Verdict
from backdrop.store.ledger import Ledger, LedgerEntry
from backdrop.store.schema import work

SETTLE_AFTER, CREATE_WINDOW = 4.0, 1.0


class SendsWhileRead:
    """The credit history, empty; while it is read, the other run's create leaves (its claim touched first)."""

    def __init__(self, ledger: Ledger, key: str) -> None:
        self.ledger, self.key, self.sent = ledger, key, False

    async def history_page(self, token: str | None) -> tuple[list[CreditHistoryEntry], str | None]:
        self.sent = await asyncio.to_thread(self.ledger.touch_claim, self.key, 1)
        return [], None

    async def picture_verdict(self, task_id: str, entry: LedgerEntry) -> Verdict:
        return "unknown"

    async def show(self, task_ids: list[str]) -> None:
        return None


def test_a_create_sent_while_the_history_is_read_is_not_settled_as_not_created(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    key = "k" * 64
    assert ledger.claim(key, 1, run_id="run-X", environment="env", image_sha256="s" * 64, prompt="beach")
    past = datetime.now(UTC) - timedelta(seconds=SETTLE_AFTER + CREATE_WINDOW + 5)
    with ledger.engine.begin() as conn:  # X is another host's run, its claim untouched since long enough
        conn.execute(update(work).values(owner="otherhost:4242", created_at=past, updated_at=past))
    vendor = SendsWhileRead(ledger, key)

    settled = asyncio.run(reconcile.settle_lost_creates(
        vendor, ledger, environment="env", key_id=None, settle_after=SETTLE_AFTER, create_window=CREATE_WINDOW))

    assert vendor.sent  # X's create did leave
    assert settled.not_created == [] and settled.waiting == [key]
    latest = ledger.latest(key)
    assert latest is not None and (latest.attempt, latest.status) == (1, "creating")
    assert not ledger.claim(key, 1, run_id="run-Y")  # and nobody else can create it meanwhile


def test_without_the_other_run_the_same_read_settles_it(tmp_path: Path) -> None:
    """The control: the same lost claim, nobody sending, is settled as not created."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    key = "k" * 64
    ledger.claim(key, 1, run_id="run-X", environment="env", image_sha256="s" * 64, prompt="beach")
    past = datetime.now(UTC) - timedelta(seconds=SETTLE_AFTER + CREATE_WINDOW + 5)
    with ledger.engine.begin() as conn:
        conn.execute(update(work).values(owner="otherhost:4242", created_at=past, updated_at=past))

    class Quiet(SendsWhileRead):
        async def history_page(self, token: str | None) -> tuple[list[CreditHistoryEntry], str | None]:
            return [], None

    settled = asyncio.run(reconcile.settle_lost_creates(
        Quiet(ledger, key), ledger, environment="env", key_id=None, settle_after=SETTLE_AFTER,
        create_window=CREATE_WINDOW))
    assert settled.not_created == [key] and ledger.latest(key).status == "failed"  # type: ignore[union-attr]


def test_a_lost_claim_left_pending_keeps_its_send_allowance_on_the_next_settle(tmp_path: Path) -> None:
    """A dead run's `creating` claim may have been sent up to `create_window` after its last touch, so a charge
    there is a candidate: the row goes `pending_reconcile`, keeping its touch. The next settle must see the same
    window, not one without that allowance, in which the charge falls outside and the row is "not created"."""
    settle_after, create_window = 60.0, 100.0
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    now = datetime.now(UTC)
    touched = now - timedelta(seconds=400)
    ledger.claim("K" * 64, 1, run_id="r0", environment="env", image_sha256="k" * 64, prompt="p")
    ledger.mark("K" * 64, 1, status="succeeded", task_id="KNOWN")  # a known task calibrates the vendor's clock
    key = "L" * 64
    ledger.claim(key, 1, run_id="run-X", environment="env", image_sha256="s" * 64, prompt="beach")
    with ledger.engine.begin() as conn:
        conn.execute(update(work).where(work.c.task_id == "KNOWN").values(
            created_at=touched - timedelta(seconds=60), updated_at=touched - timedelta(seconds=58),
            charged_at=touched - timedelta(seconds=58), charged_run_id="r0"))
        conn.execute(update(work).where(work.c.content_key == key).values(
            owner="otherhost:4242", created_at=touched, updated_at=touched))
    history = [CreditHistoryEntry(id="1", timestamp=touched - timedelta(seconds=59), action="change_background",
                                  target_id="KNOWN", units=-4),
               # sent 95 s after the touch (inside create_window), charged 55 s later (inside settle_after)
               CreditHistoryEntry(id="2", timestamp=touched + timedelta(seconds=150), action="change_background",
                                  target_id="ORPHAN", units=-4)]

    class Vendor(SendsWhileRead):
        async def history_page(self, token: str | None) -> tuple[list[CreditHistoryEntry], str | None]:
            return history, None

    for _ in range(2):
        settled = asyncio.run(reconcile.settle_lost_creates(
            Vendor(ledger, key), ledger, environment="env", key_id=None, settle_after=settle_after,
            create_window=create_window, now=now))
        assert settled.pending == {key: ["ORPHAN"]} and settled.not_created == []
        assert ledger.latest(key).status == "pending_reconcile"  # type: ignore[union-attr]
