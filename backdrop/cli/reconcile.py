"""`backdrop reconcile`: list the pictures left pending_reconcile, or record by hand how one is settled.

It reads and writes only the ledger; the settling itself is backdrop.pipeline.reconcile's (`decide`).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from backdrop.cli._tables import console


def reconcile(key: str | None = None, *, task: str | None = None, not_created: bool = False,
              recreate: bool = False) -> int:
    """List the pictures left pending_reconcile, or settle one by hand. Reads and writes only the ledger.

    A lost create (its answer never came) stays pending while the vendor's credit history cannot tell whether
    it made a task. Look at its candidate charges (the gallery shows their pictures), then record what you
    found; the next run acts on it and never pays twice on a guess.

    Parameters
    ----------
    key
        The first characters of the picture's content key, as listed; none: list the pending pictures.
    task
        This charge (a task id among the candidates) is the picture's: the next run fetches it, pays nothing.
    not_created
        The lost create made nothing: the next run creates the picture.
    recreate
        Create it again although it may have been paid (flagged possible_duplicate), or because its paid
        output is lost.
    """
    from backdrop.identity import environment_id
    from backdrop.pipeline import reconcile as settle
    from backdrop.settings import BackdropSettings
    from backdrop.store.ledger import Ledger

    settings = BackdropSettings()
    from backdrop.store.migrate import move_legacy_rows

    ledger = Ledger(settings.effective_ledger_url())
    env = environment_id(settings)
    move_legacy_rows(ledger, settings, env)  # rows keyed as an earlier release keyed them: their new keys
    if key is None:
        rows = settle.pending_rows(ledger, env)
        table = Table(title=f"{len(rows)} pictures pending (account {settings.account})")
        for col in ("key", "row", "prompt or template", "since", "candidate charges"):
            table.add_column(col)
        for e in rows:
            cands = (e.error_message or "").removeprefix("candidate charges: ") if "candidate" in (
                e.error_message or "") else "none seen yet"
            table.add_row(e.content_key[:12], e.row_id or "", e.prompt or e.template_id or "",
                          e.created_at.isoformat(timespec="seconds"), cands)
        Console().print(table)
        return 0
    chosen = [task is not None, not_created, recreate]
    if sum(chosen) != 1:
        console.print("[red]error:[/red] give exactly one of --task, --not-created, --recreate")
        return 2
    decision: settle.Decision = "task" if task else "not_created" if not_created else "recreate"
    try:
        entry = settle.decide(ledger, env, key, decision, task_id=task)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    console.print(f"{entry.content_key[:12]}: {entry.status} ({entry.error_code}); the next run acts on it")
    return 0
