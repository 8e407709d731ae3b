"""Pacing: the vendor's request windows kept in-process (`memory`) or shared through a database (`database`).

`limiter_for` is where a run's limiter is chosen (the composition roots call it and hand the limiter to the
client). The database limiter is imported only when a run asks for it, so that the client, which imports
`backdrop.pacing.memory`, never loads SQLAlchemy.
"""

from __future__ import annotations

from backdrop.pacing.memory import RateLimiter, SlidingWindowLimiter, limiter_from_settings, shared_limiter
from backdrop.settings import BackdropSettings

__all__ = ["RateLimiter", "SlidingWindowLimiter", "limiter_for", "limiter_from_settings", "shared_limiter"]


def limiter_for(settings: BackdropSettings) -> RateLimiter:
    """The limiter a client should use: a `DatabaseLimiter` on `settings.limiter_url` when it is
    set (one per URL, key and limits in the process), else the in-process `shared_limiter`."""
    if not settings.limiter_url:
        return shared_limiter(settings)
    from backdrop.pacing.database import database_limiter

    return database_limiter(settings)
