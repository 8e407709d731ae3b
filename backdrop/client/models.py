"""Small frozen models of what the API answers, and the client's thread-safe counters.

Ids stay strings: credit and history ids exceed 2^53 and would lose digits as floats.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TypedDict

from pydantic import BaseModel, ConfigDict

TaskState = Literal["running", "success", "error"]
ImageFormat = Literal["jpeg", "png", "webp"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UploadSlot(_Frozen):
    """Where and how to PUT the bytes of one file (a presigned URL; the headers are part of it)."""

    #: the vendor's id of the registered file, for `create_task(src_file_id=...)`
    file_id: str
    #: the presigned storage URL to send the bytes to
    url: str
    #: the HTTP method of the upload, upper case (PUT when the vendor names none)
    method: str
    #: headers the presigned request was signed with: sent exactly, no more (names and values as strings)
    headers: dict[str, str]
    #: the `x-request-id` of the answer that registered the file, for support
    request_id: str | None = None
    #: the file name the vendor echoes for this slot, if it does (matches a slot to its file in a batch)
    file_name: str | None = None


class FileSpec(TypedDict):
    """One file of a File API request (`files[]`): what the vendor needs to sign its upload."""

    content_type: str
    file_name: str
    file_size: int


class CreatedTask(_Frozen):
    """A task the vendor accepted (and will charge for when it succeeds)."""

    #: the vendor's id of the task, as a string, for `get_task` and the ledger
    task_id: str
    #: the `x-request-id` of the create's answer, for support
    request_id: str | None = None
    #: seconds: poll at least this often (`data.polling_interval`, named by the docs, unseen live); None if absent
    polling_interval: float | None = None


class TaskStatus(_Frozen):
    """One poll. `status == "error"` is an engine failure (HTTP 200), not an exception."""

    #: the task polled
    task_id: str
    #: "success" or "error" when finished; "running" for any other state the vendor reports
    status: TaskState
    #: where to download the result picture from (on success; it expires)
    result_url: str | None = None
    #: engine code such as `error_decode_image`; None when the server sent none (or "None")
    error: str | None = None
    #: the engine's own words about the failure, if any
    error_message: str | None = None
    #: the `x-request-id` of the poll's answer, for support
    request_id: str | None = None
    #: seconds: poll at least this often (`data.polling_interval`); None if absent or nonsense
    polling_interval: float | None = None


class Template(_Frozen):
    """One of the feature's backdrop templates (a `template_id` a task may use instead of a prompt)."""

    #: the `template_id` to create a task with
    id: str
    #: the template's display name
    title: str | None = None
    #: the URL of the template's thumbnail
    thumb: str | None = None
    #: the category the vendor files the template under
    category_name: str | None = None


class CreditLot(_Frozen):
    """One lot of the account's units (a subscription's or a pay-as-you-go purchase's)."""

    #: the lot's id (a string: it exceeds 2^53)
    id: str
    #: the kind of lot, e.g. `ApiSubsToken` or `ApiPaygToken` ('' when the vendor sends none)
    type: str
    #: units left in the lot (`amount_dec`, else the deprecated integer `amount`)
    amount: float
    #: when the lot's units expire (UTC); None when they do not
    expiry: datetime | None = None


class CreditBalance(_Frozen):
    """The account's units: every lot, and what the lots not yet expired add up to."""

    #: sum of the non-expired lots' `amount_dec`
    total: float
    #: every lot the vendor listed, expired ones too, in its order
    lots: list[CreditLot]


class CreditHistoryEntry(_Frozen):
    """One line of the credit history: a charge, a purchase, a gift, an expiry..."""

    #: the entry's id (a string: it exceeds 2^53)
    id: str
    #: when the units changed (UTC; the epoch when the vendor sent no time)
    timestamp: datetime
    #: what changed them, e.g. `change_background` for a charge, `expire`, `renew`
    action: str
    #: the task_id for a charge, the order_id for a purchase
    target_id: str | None = None
    #: net change over the entry's lots as the vendor reports it: negative when units were spent
    units: float


class FeatureCost(_Frozen):
    """One SKU of the vendor's price list."""

    #: what the SKU is, in the vendor's words (e.g. which feature and size)
    description: str
    #: units charged per `proc_unit` of `unit`
    amount: float
    #: what is measured, e.g. `result_image` or `second`
    unit: str
    #: how many `unit`s one charge of `amount` covers
    proc_unit: float | None = None
    #: the task endpoint that consumes this SKU
    run_task_url: str | None = None


class DownloadedFile(_Frozen):
    """A result written to disk in full: where, its content hash, and what picture it is."""

    #: where the result was written (atomically)
    path: Path
    #: hex sha256 of the bytes written
    sha256: str
    #: bytes written
    size: int
    #: the format sniffed from the first bytes (never from the file name or Content-Type)
    format: ImageFormat
    #: picture size in pixels, read from the file
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


class StatsSnapshot(TypedDict):
    """`ClientStats.snapshot()`: a copy of the counters."""

    requests: dict[str, int]
    http_429: int
    retries: int
    transport_errors: int


@dataclass
class ClientStats:
    """Counters of one client (plain ints); safe to bump from several threads and event loops."""

    #: attempts sent, per route name (`ROUTE_NAMES`), retries included
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTE_NAMES, 0))
    #: answers that were HTTP 429 (too many requests)
    http_429: int = 0
    #: attempts repeated after a retryable failure
    retries: int = 0
    #: attempts that got no HTTP answer (httpx transport errors: connect, timeout, protocol)
    transport_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_request(self, route: str) -> None:
        with self._lock:
            self.requests[route] = self.requests.get(route, 0) + 1

    def bump(self, name: Literal["http_429", "retries", "transport_errors"]) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy, e.g. for a report."""
        with self._lock:
            return {
                "requests": dict(self.requests),
                "http_429": self.http_429,
                "retries": self.retries,
                "transport_errors": self.transport_errors,
            }
