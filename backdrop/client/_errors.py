"""Turn HTTP answers and transport failures into the error tree of `backdrop.errors`.

Messages never carry the API key or a signed URL's query string: every text that may come from
the outside goes through `scrub` (backdrop/redact.py, the one helper).
"""

from __future__ import annotations

from typing import Any, get_args

import httpx

from backdrop.errors import (
    ApiError,
    AuthError,
    BackdropError,
    CreditInsufficiency,
    FileNotUploaded,
    Forbidden,
    InvalidParameters,
    InvalidTaskId,
    NotFound,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    TaskTimeout,
    TransportError,
)
from backdrop.redact import scrub
from backdrop.settings import FeatureSlug

FEATURE_SLUGS = tuple(sorted(get_args(FeatureSlug)))  # ("bg-replace", "bg-replace-v2")

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_MESSAGE = 300


def safe_url(url: httpx.URL | str) -> str:
    """The URL without its query string (a signed URL's signature lives there)."""
    u = httpx.URL(str(url))
    return str(u.copy_with(query=None, fragment=None))


def _json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or None for a body that is not JSON (or cannot even be decoded)."""
    try:
        return response.json()
    except (ValueError, RecursionError, httpx.DecodingError):
        return None


def is_vendor_error_body(response: httpx.Response) -> bool:
    """The vendor's flat error envelope: a JSON object whose `status` is the HTTP status, with a non-empty
    string `error` or `error_code`. A proxy's HTML page or its own JSON (`{"message": ...}`) is not one."""
    body = _json_body(response)
    if not isinstance(body, dict):
        return False
    status = body.get("status")
    if type(status) is not int or status != response.status_code:
        return False
    return any(isinstance(body.get(k), str) and body[k].strip() for k in ("error", "error_code"))


def is_missing_upload_body(response: httpx.Response) -> bool:
    """The debugging guide's (D7) answer to a task on a file never uploaded: the vendor's error body with
    status 500 whose `error` and `error_code`, where present, are both exactly `unknown_internal_error`."""
    if response.status_code != 500 or not is_vendor_error_body(response):
        return False
    body = _json_body(response)
    fields = [body[k] for k in ("error", "error_code") if body.get(k) is not None]
    return all(isinstance(f, str) and f.strip() == "unknown_internal_error" for f in fields)


def _body_fields(response: httpx.Response) -> tuple[str | None, str | None]:
    """(message, error_code) from a flat vendor error body; tolerant of any other body."""
    body = _json_body(response)
    if body is None:
        try:
            text = response.text.strip()
        except (ValueError, httpx.DecodingError):
            return None, None
        # Storage (S3-style) answers with XML or text; keep it short and only if it is short.
        return (text[:_MAX_MESSAGE] if text and len(text) <= _MAX_MESSAGE else None), None
    if not isinstance(body, dict):
        return None, None
    message = body.get("error")
    if not isinstance(message, str) or not message.strip():
        detail = body.get("message", body.get("detail"))
        message = detail if isinstance(detail, str) else None
    code = body.get("error_code")
    return (message.strip() if message else None), (str(code) if code else None)


def error_from_response(
    response: httpx.Response,
    *,
    secret: str | None = None,
    feature: str | None = None,
    with_url: bool = False,
    create_from_file: bool = False,
) -> ApiError:
    """Map an error response; `message` is the body's `error` text (else the reason phrase).

    `feature` is set when the path is a feature route, so a 404 there can say which setting to
    fix. `with_url` appends the URL without its query (for storage, whose bodies say little).
    `create_from_file`: the request is a task create from a `src_file_id`, where a 404 or the
    documented 500 `unknown_internal_error` point at a file that was never uploaded.

    The error is `refused` (the request had no effect) only for the vendor's own error body with a
    4xx status. The documented missing-upload 500 on a create (FileNotUploaded) is not: the guide says a file never
    PUT answers it, not that every such answer made no task, and the same code is the vendor's generic internal
    error. Such a create is ambiguous until the vendor's records settle it.
    """
    status = response.status_code
    message, code = _body_fields(response)
    request_id = response.headers.get("x-request-id")
    text = scrub(message, secret) if message else None
    lowered = (text or "").strip().rstrip(".").lower()
    vendor_body = is_vendor_error_body(response)
    missing_upload = create_from_file and is_missing_upload_body(response)

    cls: type[ApiError]
    if status == 400:
        if code == "CreditInsufficiency":
            cls = CreditInsufficiency
        elif code == "InvalidTaskId" or lowered == "invalid task id":
            cls = InvalidTaskId
        else:  # InvalidParameters, BadRequest, OperationInvalid, ...: fatal for the row
            cls = InvalidParameters
    elif status == 401:
        cls = AuthError
    elif status == 403:
        cls = Forbidden
    elif status == 404:
        cls = NotFound
        if feature is not None and create_from_file:
            hint = (
                f"the create answered 404: either the API has no route for feature {feature!r} (set "
                f"BACKDROP_FEATURE to {' or '.join(FEATURE_SLUGS)}), or it does not know the file id "
                "(the upload's PUT never completed, or the file expired)"
            )
            text = f"{hint} (server said: {text})" if text else hint
        elif feature is not None:
            hint = (
                f"the API has no route for feature {feature!r}; set BACKDROP_FEATURE to "
                f"{' or '.join(FEATURE_SLUGS)}"
            )
            text = f"{hint} (server said: {text})" if text else hint
    elif status == 429:
        cls = RateLimited
    elif missing_upload:
        cls = FileNotUploaded
        hint = (
            "the vendor's answer when a file was never uploaded (its upload's PUT never completed), and also its "
            "generic internal error: a task may have been made, and its credit history settles it"
        )
        text = f"{hint} (server said: {text})" if text else hint
    elif status == 500 and (code == "TaskTimeout" or lowered == "task execution timed out"):
        cls = TaskTimeout
    elif status >= 500:
        cls = ServerError
    else:
        cls = ApiError
    full = text or response.reason_phrase or f"HTTP {status}"
    if with_url:
        full += f" ({response.request.method} {safe_url(response.request.url)})"
    refused = vendor_body and 400 <= status < 500
    return cls(full, status=status, error_code=code, request_id=request_id, refused=refused)


def error_from_transport(
    exc: httpx.TransportError, request: httpx.Request | None = None, *, secret: str | None = None
) -> TransportError:
    """ConnectError/ConnectTimeout/PoolTimeout never reached the server; anything else may have."""
    where = ""
    if request is not None:
        where = f" ({request.method} {safe_url(request.url)})"
    detail = scrub(str(exc), secret) or "no detail"
    cls: type[TransportError] = NotSent if isinstance(exc, _NOT_SENT) else OutcomeUnknown
    return cls(f"{type(exc).__name__}: {detail}{where}")


def unexpected_body(response: httpx.Response, what: str) -> ServerError:
    """A 2xx whose body is not the documented envelope (a proxy page, a truncated body...)."""
    where = f"{response.request.method} {safe_url(response.request.url)}"
    return ServerError(
        f"unexpected response body: {what} ({where})",
        status=response.status_code,
        request_id=response.headers.get("x-request-id"),
    )


def describe(err: BackdropError) -> str:
    return f"{type(err).__name__}: {err}"
