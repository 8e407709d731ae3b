"""Pacing: the vendor's request windows kept in-process (`memory`) or shared through a database (`database`)."""

from backdrop.pacing.database import DatabaseLimiter, limiter_for
from backdrop.pacing.memory import RateLimiter, SlidingWindowLimiter, limiter_from_settings, shared_limiter

__all__ = ["DatabaseLimiter", "RateLimiter", "SlidingWindowLimiter", "limiter_for", "limiter_from_settings",
           "shared_limiter"]
