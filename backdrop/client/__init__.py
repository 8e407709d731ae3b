"""The async client of the background-change API. Prefect-free; never imports the sandbox."""

from backdrop.client.client import BackdropClient
from backdrop.client.models import (
    ClientStats,
    CreatedTask,
    CreditBalance,
    CreditHistoryEntry,
    CreditLot,
    DownloadedFile,
    FeatureCost,
    TaskStatus,
    Template,
    UploadSlot,
)
from backdrop.pacing.memory import (
    RateLimiter,
    SlidingWindowLimiter,
    limiter_from_settings,
    shared_limiter,
)

__all__ = [
    "BackdropClient",
    "ClientStats",
    "CreatedTask",
    "CreditBalance",
    "CreditHistoryEntry",
    "CreditLot",
    "DownloadedFile",
    "FeatureCost",
    "RateLimiter",
    "SlidingWindowLimiter",
    "TaskStatus",
    "Template",
    "UploadSlot",
    "limiter_from_settings",
    "shared_limiter",
]
