"""Ledgers written before the content key changed (issues 11 and 14) are moved to the new keys, so upgrading
never pays again for a picture that was paid under the old ones.

Before issue 11, a picture's account was a hash of the API URL's spelling, the key and the feature slug, and its
prompt was hashed as written; until issue 14 it was (account, server, slug). Now it is (account, server, feature
family): `bg-replace` and `bg-replace-v2` are one paid feature (`backdrop.identity.FEATURE_FAMILY`). The rows keep
the picture's hash, prompt and template, so their new key can be computed; a run finds the rows of its own old
accounts (one per slug and generation) and moves them, recording in each the slug its create was sent under (the
old id names it), which is the slug its task is polled under.

One picture may have rows under several old keys (both slugs used, or two spellings of one prompt): only one old
key's rows move, the one that holds a success, else a task in flight; the others were paid duplicates already and
stay under their old keys (the cost report still counts them). A picture the new key already holds moves nothing.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select, update

from backdrop.identity import account_environment_ids, content_key
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger
from backdrop.store.schema import IN_FLIGHT, LedgerEntry, work

__all__ = ["move_legacy_rows"]


def _rank(rows: list[LedgerEntry]) -> int:
    """Which old key's rows of one picture move: a success first, then a task in flight, then the rest."""
    statuses = {e.status for e in rows}
    return 0 if "succeeded" in statuses else 1 if statuses & IN_FLIGHT else 2


def move_legacy_rows(ledger: Ledger, settings: BackdropSettings, environment: str) -> int:
    """Move this account's rows from its old account ids and keys to the new ones; returns how many moved."""
    olds = {env: slug for env, slug in account_environment_ids(settings).items() if env != environment}
    # new key -> (old id, old key) -> that old picture's attempts
    by_key: dict[str, dict[tuple[str, str], list[LedgerEntry]]] = defaultdict(lambda: defaultdict(list))
    for old in olds:
        for e in ledger.entries(environment=old):
            task_type = "template" if e.template_id else "prompt"
            new_key = content_key(image_sha256=e.image_sha256 or "", prompt=e.prompt, template_id=e.template_id,
                                  task_type=task_type, environment=environment)
            by_key[new_key][old, e.content_key].append(e)
    moved = 0
    for new_key, sources in by_key.items():
        (old, _), rows = min(sources.items(), key=lambda kv: _rank(kv[1]))
        with ledger.engine.begin() as conn:
            if conn.execute(select(work.c.id).where(work.c.content_key == new_key).limit(1)).first():
                continue  # the new key holds this picture already: one picture, paid once already
            for e in rows:
                stmt = (update(work).where(work.c.id == e.id, work.c.environment == old)
                        .values(environment=environment, content_key=new_key, feature=e.feature or olds[old]))
                moved += conn.execute(stmt).rowcount
    return moved
