"""Cache policies, the retry rule and the shared `@task` options of the tasks.

Prefect's default policy is scoped to one flow run and busts on any edit of a task's code, so it cannot stop
a re-run from paying again. These policies key on content (image hash, prompt or template, feature,
account) plus `backdrop.identity.CACHE_VERSION`, and the create policy is SERIALIZABLE with a lock, so two
concurrent calls for the same picture run the body once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.locking.memory import MemoryLockManager
from prefect.runtime import task_run
from prefect.transactions import IsolationLevel

from backdrop.errors import BackdropError
from backdrop.identity import CACHE_VERSION

__all__ = ["CREATE_POLICY", "UPLOAD_POLICY", "CACHE_TTL", "SAFE_TO_RETRY", "ACCOUNT_READ", "retry_if_transient",
           "row_run_name"]

#: shorter than the vendor's task and file retention (24 h by the bundle, 30 days by the docs page)
CACHE_TTL = timedelta(hours=20)


def _upload_key(_ctx: Any, params: dict[str, Any]) -> str:
    return f"upload-{CACHE_VERSION}-{params['environment']}-{params['upload_route']}-{params['image_sha256']}"


def _create_key(_ctx: Any, params: dict[str, Any]) -> str:
    return f"create-{CACHE_VERSION}-{params['key']}-a{params['attempt']}"


UPLOAD_POLICY = CacheKeyFnPolicy(cache_key_fn=_upload_key)
#: In-process locking only. Across processes and hosts the ledger's claim is the guard: Prefect's async
#: transactions (3.8.8, still 3.9.1) release a prefect-redis lock with the sync call, which never frees it (async
#: tasks deadlock).
CREATE_POLICY = CacheKeyFnPolicy(cache_key_fn=_create_key).configure(
    isolation_level=IsolationLevel.SERIALIZABLE,
    lock_manager=MemoryLockManager(),  # type: ignore[no-untyped-call]  # Prefect leaves its __init__ unannotated
)


def retry_if_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry a task only when its error says repeating the request is safe (429, 5xx, transport)."""
    exc = state.data
    return isinstance(exc, BackdropError) and exc.retryable


#: a picture's step that is free and safe to repeat (upload, wait, download): two retries, transient errors only
SAFE_TO_RETRY: dict[str, Any] = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_if_transient)

#: an account-wide read (credits, credit history, reconciliation): never cached, retried on transient errors
ACCOUNT_READ: dict[str, Any] = dict(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
                                    retry_condition_fn=retry_if_transient)


def row_run_name(step: str, fallback: str, suffix: str = "") -> Callable[[], str]:
    """A task run's name in the UI: the step and the row it works for (its `label` parameter, printable, at most
    40 characters), else the first 12 characters of its `fallback` parameter; `suffix` names another parameter
    to append (the create's attempt)."""

    def name() -> str:
        params = task_run.parameters
        label = "".join(c if c.isprintable() else "?" for c in str(params.get("label") or ""))[:40]
        shown = label or str(params.get(fallback, ""))[:12]
        return f"{step}-{shown}" + (f"-a{params.get(suffix)}" if suffix else "")

    return name
