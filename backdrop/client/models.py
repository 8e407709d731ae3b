"""Small frozen models of what the API answers, and the client's thread-safe counters.

Ids stay strings: credit and history ids exceed 2^53 and would lose digits as floats.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

TaskState = Literal["running", "success", "error"]
ImageFormat = Literal["jpeg", "png", "webp"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UploadSlot(_Frozen):
    """Where and how to PUT the bytes of one file (a presigned URL; the headers are part of it)."""

    file_id: str
    url: str
    method: str
    headers: dict[str, str]
    request_id: str | None = None


class CreatedTask(_Frozen):
    task_id: str
    request_id: str | None = None


class TaskStatus(_Frozen):
    """One poll. `status == "error"` is an engine failure (HTTP 200), not an exception."""

    task_id: str
    status: TaskState
    result_url: str | None = None
    #: engine code such as `error_decode_image`; None when the server sent none (or "None")
    error: str | None = None
    error_message: str | None = None
    request_id: str | None = None


class Template(_Frozen):
    id: str
    title: str | None = None
    thumb: str | None = None
    category_name: str | None = None


class CreditLot(_Frozen):
    id: str
    type: str
    amount: float
    expiry: datetime | None = None


class CreditBalance(_Frozen):
    #: sum of the non-expired lots' `amount_dec`
    total: float
    lots: list[CreditLot]


class CreditHistoryEntry(_Frozen):
    id: str
    timestamp: datetime
    action: str
    #: the task_id for a charge, the order_id for a purchase
    target_id: str | None = None
    #: net change over the entry's lots as the vendor reports it: negative when units were spent
    units: float


class FeatureCost(_Frozen):
    description: str
    amount: float
    unit: str
    proc_unit: float | None = None
    run_task_url: str | None = None


class DownloadedFile(_Frozen):
    path: Path
    sha256: str
    size: int
    format: ImageFormat
    width: int
    height: int


ROUTE_NAMES = (
    "file",
    "put",
    "create",
    "poll",
    "templates",
    "delete",
    "credit",
    "history",
    "feature_cost",
    "download",
)


@dataclass
class ClientStats:
    """Counters of one client (plain ints); safe to bump from several threads and event loops."""

    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTE_NAMES, 0))
    http_429: int = 0
    retries: int = 0
    transport_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_request(self, route: str) -> None:
        with self._lock:
            self.requests[route] = self.requests.get(route, 0) + 1

    def bump(self, name: Literal["http_429", "retries", "transport_errors"]) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def snapshot(self) -> dict[str, object]:
        """A consistent copy, e.g. for a report."""
        with self._lock:
            return {
                "requests": dict(self.requests),
                "http_429": self.http_429,
                "retries": self.retries,
                "transport_errors": self.transport_errors,
            }
