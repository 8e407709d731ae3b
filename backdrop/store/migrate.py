"""Ledgers written before the content key changed (issue 11) are moved to the new keys, so upgrading never pays
again for a picture that was paid under the old ones.

Before, a picture's account was a hash of the API URL's spelling, the key and the feature, and its prompt was
hashed as written. Now the account is `BACKDROP_ACCOUNT` and the server, and the prompt is normalised. The rows
keep the picture's hash, prompt and template, so their new key can be computed; a run finds the rows of its own
old account (the one its URL, key and feature made) and moves them. Two old rows that now name one picture (two
spellings of one prompt) keep the first: the second was a paid duplicate already, and stays under its old key.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from backdrop.identity import legacy_environment_id
from backdrop.pipeline.steps import content_key
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger
from backdrop.store.schema import work

__all__ = ["move_legacy_rows"]


def move_legacy_rows(ledger: Ledger, settings: BackdropSettings, environment: str) -> int:
    """Move this account's rows from the old account id and keys to the new ones; returns how many moved."""
    old = legacy_environment_id(settings)
    if old == environment:
        return 0
    moved = 0
    for e in ledger.entries(environment=old):
        task_type = "template" if e.template_id else "prompt"
        new_key = content_key(image_sha256=e.image_sha256 or "", prompt=e.prompt, template_id=e.template_id,
                              task_type=task_type, environment=environment)
        stmt = (update(work).where(work.c.id == e.id, work.c.environment == old)
                .values(environment=environment, content_key=new_key))
        try:
            with ledger.engine.begin() as conn:
                moved += conn.execute(stmt).rowcount
        except IntegrityError:
            continue  # the new key already has this attempt: one picture, paid once already
    return moved
