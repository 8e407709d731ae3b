"""Cache policies and the retry rule shared by the tasks.

Prefect's default policy is scoped to one flow run and busts on any edit of a task's code, so it cannot stop
a re-run from paying again. These policies key on content (image hash, prompt or template, feature,
account) plus `backdrop.steps.CACHE_VERSION`, and the create policy is SERIALIZABLE with a lock, so two
concurrent calls for the same picture run the body once.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from prefect.cache_policies import CacheKeyFnPolicy
from prefect.locking.memory import MemoryLockManager
from prefect.transactions import IsolationLevel

from backdrop.errors import BackdropError
from backdrop.steps import CACHE_VERSION

__all__ = ["CREATE_POLICY", "UPLOAD_POLICY", "CACHE_TTL", "retry_if_transient", "lock_manager"]

#: shorter than the vendor's task and file retention (24 h by the bundle, 30 days by the docs page)
CACHE_TTL = timedelta(hours=20)


def lock_manager() -> Any:
    """In-process locks by default; Redis (BACKDROP_REDIS_URL) when several processes share a cache."""
    url = os.environ.get("BACKDROP_REDIS_URL")
    if url:
        from prefect_redis.locking import RedisLockManager  # optional dependency
        from redis import Redis

        kw = Redis.from_url(url).connection_pool.connection_kwargs
        return RedisLockManager(host=kw.get("host", "localhost"), port=kw.get("port", 6379),
                                db=kw.get("db", 0), password=kw.get("password"))
    return MemoryLockManager()


def _upload_key(_ctx: Any, params: dict[str, Any]) -> str:
    return f"upload-{CACHE_VERSION}-{params['environment']}-{params['upload_route']}-{params['image_sha256']}"


def _create_key(_ctx: Any, params: dict[str, Any]) -> str:
    return f"create-{CACHE_VERSION}-{params['key']}-a{params['attempt']}"


UPLOAD_POLICY = CacheKeyFnPolicy(cache_key_fn=_upload_key)
CREATE_POLICY = CacheKeyFnPolicy(cache_key_fn=_create_key).configure(
    isolation_level=IsolationLevel.SERIALIZABLE, lock_manager=lock_manager()
)


def retry_if_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry a task only when its error says repeating the request is safe (429, 5xx, transport)."""
    exc = state.data
    return isinstance(exc, BackdropError) and exc.retryable
