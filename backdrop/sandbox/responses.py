"""The vendor's answer bodies, error envelopes and the S3-like storage errors."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response

INVALID_API_KEY = {"status": 401, "error": "This API key is not recognized.",
                   "error_code": "InvalidApiKey"}
INVALID_ACCESS_TOKEN = {"status": 401, "error": "Unauthorized", "error_code": "InvalidAccessToken"}
TOO_MANY_REQUESTS = {"status": 429, "error": "Too many requests"}
NOT_FOUND = {"status": 404, "error": "Not Found"}
INVALID_TASK_ID = {"status": 400, "error": "Invalid task ID", "error_code": "InvalidTaskId"}
TASK_TIMEOUT = {"status": 500, "error": "Task execution timed out", "error_code": "TaskTimeout"}
INTERNAL = {"status": 500, "error": "unknown_internal_error",
            "error_code": "unknown_internal_error"}

_GATEWAY_HTML = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def ok(payload: dict[str, Any] | None = None, **envelope: Any) -> JSONResponse:
    """`{"status":200,"data":payload}`, or another envelope key given as a keyword."""
    body: dict[str, Any] = {"status": 200}
    if payload is not None:
        body["data"] = payload
    body.update(envelope)
    return JSONResponse(body)


def error(status: int, message: str, code: str | None = None) -> JSONResponse:
    """The vendor's flat error envelope."""
    body: dict[str, Any] = {"status": status, "error": message}
    if code:
        body["error_code"] = code
    return JSONResponse(body, status_code=status)


def invalid(message: str) -> JSONResponse:
    return error(400, message, "InvalidParameters")


def json_body(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=int(body["status"]))


def for_status(status: int) -> Response:
    """A plausible answer for a scripted or injected status.

    500 is the vendor's own JSON; 502/504 come from the load balancer in front of it, as HTML.
    """
    if status == 500:
        return json_body(INTERNAL)
    if status == 429:
        return json_body(TOO_MANY_REQUESTS)
    if status in (502, 504):
        html = _GATEWAY_HTML.format(code=status, reason=_REASONS[status])
        return Response(html, status_code=status, media_type="text/html")
    return error(status, _REASONS.get(status, "Error"))


def s3_error(status: int, code: str, message: str) -> Response:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(xml, status_code=status, media_type="application/xml")
