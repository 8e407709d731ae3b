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

__all__ = [
    "BackdropClient",
    "ClientStats",
    "CreatedTask",
    "CreditBalance",
    "CreditHistoryEntry",
    "CreditLot",
    "DownloadedFile",
    "FeatureCost",
    "TaskStatus",
    "Template",
    "UploadSlot",
]
