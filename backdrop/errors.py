"""What can go wrong talking to the API, arranged by what a caller may do about it.

    BackdropError
    ├── ConfigError               bad settings (no key, unknown slug); fix and run again
    ├── CsvError                  the CSV as a whole cannot be used (empty, unreadable, missing columns)
    ├── InputRejected             one row's input picture cannot be sent (preflight); nothing was paid
    ├── ApiError                  the server answered with an error status
    │   ├── RateLimited           429; retryable (no Retry-After: back off with jitter)
    │   ├── ServerError           5xx; retryable for requests that are safe to repeat
    │   │   └── TaskTimeout       500 TaskTimeout on a poll; not retryable (every later poll says the same)
    │   ├── AuthError             401 (InvalidApiKey, ...); fatal for the batch
    │   ├── InvalidParameters     400 InvalidParameters / BadRequest; fatal for the row
    │   ├── CreditInsufficiency   400; stop creating, let in-flight tasks finish
    │   ├── InvalidTaskId         400 on a poll: unknown or expired task; fatal for the row
    │   ├── NotFound              404: unknown route (or, on a create, an unknown file id)
    │   ├── FileNotUploaded       500 unknown_internal_error on a create from a file id: a PUT never completed, or not
    │   └── Forbidden             403 from storage: a signed URL expired or was forged
    ├── EngineError               HTTP 200 with task_status "error"; fatal for the row, not charged
    ├── TransportError            no usable answer
    │   ├── NotSent               connection never made: safe to retry, even a create
    │   └── OutcomeUnknown        the request may have arrived: retry only if idempotent
    ├── ClaimLost                 a create's ledger claim was settled by another run before sending; nothing sent
    ├── AmbiguousCreate           a create whose answer was lost: reconcile, never re-create blindly
    ├── PollDeadlineExceeded      a task still running at the poll deadline: pending_reconcile
    ├── DownloadError             a result that could not be fetched or is not an image
    └── WebhookRejected           a webhook delivery that is not authentic, fresh, or a task notification; 400

Every error carries `status`, `error_code`, `message` and `request_id` (the `x-request-id`
header) where they exist, and `retryable` says whether repeating the same request is safe.

`refused` says the request definitely had no effect (nothing created, nothing charged): the server
answered with its own error body (`{status, error, error_code}`) and a 4xx status, or the connection was never
made (NotSent), or the client refused before sending. The documented 500 `unknown_internal_error` for a file
never uploaded (FileNotUploaded) is not a refusal: the same answer is the vendor's generic internal error.
Anything a create ends in that is not `refused` may have made a task: see `is_definite_refusal` and
AmbiguousCreate.
No error message ever contains the API key, the webhook secret (masked by `backdrop.redact`) or a signed
URL's query string.
"""

from __future__ import annotations

from typing import Any, ClassVar

from backdrop.redact import redact

__all__ = [
    "AmbiguousCreate",
    "ApiError",
    "AuthError",
    "BackdropError",
    "ClaimLost",
    "ConfigError",
    "CreditInsufficiency",
    "CsvError",
    "DownloadError",
    "EngineError",
    "FileNotUploaded",
    "Forbidden",
    "InputRejected",
    "InvalidParameters",
    "InvalidTaskId",
    "NotFound",
    "NotSent",
    "OutcomeUnknown",
    "PollDeadlineExceeded",
    "RateLimited",
    "ServerError",
    "TaskTimeout",
    "TransportError",
    "WebhookRejected",
    "is_definite_refusal",
]


class BackdropError(Exception):
    """Base of every error Backdrop raises on purpose."""

    retryable: ClassVar[bool] = False
    #: the request definitely had no effect on the server (see the module docstring); set per instance
    refused: bool = False
    #: short machine code for reports (overridden per instance where the vendor gives one)
    code: ClassVar[str] = "backdrop_error"

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
        refused: bool | None = None,
    ) -> None:
        message = redact(message)  # the API key or webhook secret never leaves in an error, whatever carried it
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.request_id = request_id
        if refused is not None:
            self.refused = refused

    @property
    def report_code(self) -> str:
        """The code a report shows: the vendor's code when it sent one, ours otherwise."""
        return self.error_code or self.code

    def __str__(self) -> str:
        bits = [self.message or self.__class__.__name__]
        if self.status is not None:
            bits.append(f"http={self.status}")
        if self.error_code:
            bits.append(f"code={self.error_code}")
        if self.request_id:
            bits.append(f"request_id={self.request_id}")
        return " ".join(bits)

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect pickles failed states; keep the keyword fields across pickling.
        return (
            _rebuild,
            (self.__class__, self.message, self.status, self.error_code, self.request_id,
             {**self._extra(), "refused": self.refused}),
        )

    def _extra(self) -> dict[str, Any]:
        return {}


def _rebuild(
    cls: type[BackdropError], message: str, status: Any, code: Any, rid: Any, extra: dict[str, Any]
) -> BackdropError:
    err = cls.__new__(cls)
    BackdropError.__init__(err, message, status=status, error_code=code, request_id=rid)
    err.__dict__.update(extra)
    return err


class ConfigError(BackdropError):
    code = "config_error"


class CsvError(BackdropError):
    """The CSV as a whole cannot be used (empty, unreadable, missing columns)."""

    code = "bad_csv"


class InputRejected(BackdropError):
    """The input picture cannot be sent; `code` says why. Nothing was paid."""

    code = "input_rejected"

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status, error_code=code)


class ApiError(BackdropError):
    code = "api_error"


class RateLimited(ApiError):
    retryable = True
    code = "rate_limited"


class ServerError(ApiError):
    retryable = True
    code = "server_error"


class TaskTimeout(ServerError):
    """The task timed out: every later poll answers the same, so neither the client nor a Prefect retry repeats it."""

    retryable = False
    code = "TaskTimeout"


class AuthError(ApiError):
    code = "InvalidApiKey"


class InvalidParameters(ApiError):
    code = "InvalidParameters"


class CreditInsufficiency(ApiError):
    code = "CreditInsufficiency"


class InvalidTaskId(ApiError):
    code = "InvalidTaskId"


class NotFound(ApiError):
    code = "not_found"


class FileNotUploaded(ApiError):
    """A create from a file id answered with the documented 500 `unknown_internal_error` (debugging guide D7): the
    guide's answer for a file whose upload PUT never completed. Not a refusal: the guide does not say that every such
    answer made no task, and `unknown_internal_error` is the vendor's generic internal error too."""

    code = "file_not_uploaded"

    @property
    def report_code(self) -> str:
        return self.code  # the vendor's `unknown_internal_error` says nothing a report reader can act on


class Forbidden(ApiError):
    code = "forbidden"


class _TaskBound:
    """Mixin (before BackdropError in the bases) for an error about one task: it keeps `task_id`, pickling too."""

    def __init__(self, message: str = "", *, task_id: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)  # type: ignore[call-arg]  # BackdropError.__init__, next in the MRO
        self.task_id = task_id

    def _extra(self) -> dict[str, Any]:
        return {"task_id": self.task_id}


class EngineError(_TaskBound, BackdropError):
    """The task ran and failed (HTTP 200, task_status "error"). Not charged."""

    code = "engine_error"


class TransportError(BackdropError):
    code = "transport_error"


class NotSent(TransportError):
    retryable = True
    refused = True
    code = "connect_error"


class OutcomeUnknown(TransportError):
    retryable = True  # for idempotent requests only; a create turns it into AmbiguousCreate
    code = "no_answer"


class ClaimLost(BackdropError):
    """Right before sending a create, its ledger claim was no longer ours: another run had settled it as lost.
    Nothing was sent."""

    refused = True
    code = "claim_lost"


class AmbiguousCreate(BackdropError):
    """The create request may have reached the server, and no answer came back."""

    code = "ambiguous_create"


class PollDeadlineExceeded(_TaskBound, BackdropError):
    code = "poll_deadline"


class DownloadError(BackdropError):
    code = "download_error"


class WebhookRejected(BackdropError):
    """A delivery that is not authentic, fresh, or a task notification; `reason` says which."""

    code = "webhook_rejected"

    def __init__(self, reason: str = "", **kw: Any) -> None:
        super().__init__(reason, **kw)

    @property
    def reason(self) -> str:
        return self.message


def is_definite_refusal(exc: BaseException) -> bool:
    """True when `exc` proves the request had no effect (for a create: no task, no charge).

    Anything else raised once a create may have left means "maybe created": reconcile, never re-create blindly.
    """
    return isinstance(exc, BackdropError) and not isinstance(exc, AmbiguousCreate) and exc.refused
