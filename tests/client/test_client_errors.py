"""Status → error mapping (contract section 6), request ids, and secrets kept out of messages."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from backdrop.client import BackdropClient
from backdrop.errors import (
    ApiError,
    AuthError,
    ConfigError,
    CreditInsufficiency,
    Forbidden,
    InvalidParameters,
    InvalidTaskId,
    NotFound,
    RateLimited,
    ServerError,
    TaskTimeout,
)
from tests.client.helpers import (
    KEY,
    NoWait,
    Recorder,
    SleepRecorder,
    api_json,
    make_client,
    make_settings,
)

pytestmark = pytest.mark.anyio

TASK = "grH0CvsgXuAIHLUzD0V1Ol34hoet3R1tvdbtiVHrDb6_UqCLKIejAIajwxrhOAfe"


@pytest.mark.parametrize(
    ("status", "body", "expected", "code", "message"),
    [
        (401, {"status": 401, "error": "Key not recognized.", "error_code": "InvalidApiKey"},
         AuthError, "InvalidApiKey", "Key not recognized."),
        # no error_code at all
        (401, {"status": 401, "error": "Invalid API key"}, AuthError, None, "Invalid API key"),
        (400, {"status": 400, "error": "bad prompt", "error_code": "InvalidParameters"},
         InvalidParameters, "InvalidParameters", "bad prompt"),
        (400, {"status": 400, "error": "unexpected field", "error_code": "BadRequest"},
         InvalidParameters, "BadRequest", "unexpected field"),
        # an unknown 400 code is still fatal for the row, and keeps its code
        (400, {"status": 400, "error": "not finished", "error_code": "OperationInvalid"},
         InvalidParameters, "OperationInvalid", "not finished"),
        (400, {"status": 400, "error": "not enough units", "error_code": "CreditInsufficiency"},
         CreditInsufficiency, "CreditInsufficiency", "not enough units"),
        # no `error` field: the message falls back to the reason phrase
        (400, {"status": 400, "error_code": "InvalidTaskId"},
         InvalidTaskId, "InvalidTaskId", "Bad Request"),
        # no error_code: recognised by its message
        (400, {"status": 400, "error": "Invalid task ID"}, InvalidTaskId, None, "Invalid task ID"),
        (403, {"status": 403, "error": "Forbidden"}, Forbidden, None, "Forbidden"),
        (429, {"status": 429, "error": "Too many requests"},
         RateLimited, None, "Too many requests"),
        (500, {"status": 500, "error_code": "TaskTimeout"},
         TaskTimeout, "TaskTimeout", "Internal Server Error"),
        (500, {"status": 500, "error": "Task execution timed out"},
         TaskTimeout, None, "Task execution timed out"),
        (500, {"status": 500, "error": "unknown_internal_error"},
         ServerError, None, "unknown_internal_error"),
        (502, "<html>bad gateway</html>", ServerError, None, "<html>bad gateway</html>"),
        (409, {"detail": "conflict"}, ApiError, None, "conflict"),
    ],
)
async def test_get_task_maps_error_status(
    status: int, body: object, expected: type[ApiError], code: str | None, message: str
) -> None:
    resp = api_json(status, body) if not isinstance(body, str) else httpx.Response(
        status, text=body, headers={"x-request-id": "7301234567890123"}
    )
    api = Recorder([resp])
    async with make_client(api, max_retries=0) as client:
        with pytest.raises(ApiError) as info:
            await client.get_task(TASK)
    err = info.value
    assert type(err) is expected
    assert err.status == status
    assert err.error_code == code
    assert err.message == message
    assert err.request_id == "7301234567890123"
    assert len(api.requests) == 1


async def test_404_on_a_feature_route_names_the_setting() -> None:
    api = Recorder([api_json(404, {"status": 404, "error": "Not Found"})])
    settings = make_settings().model_copy(update={"feature": "bg-nope"})
    client = BackdropClient(
        settings, limiter=NoWait(), transport=api.transport, sleep=SleepRecorder()
    )
    async with client:
        with pytest.raises(NotFound) as info:
            await client.create_task(src_file_id="f1", prompt="beach")
    text = str(info.value)
    assert "the API has no route for feature 'bg-nope'" in text
    assert "set BACKDROP_FEATURE to bg-replace or bg-replace-v2" in text
    assert "does not know the file id" in text  # the other likely cause of a 404 on a create
    assert info.value.refused
    assert api.requests[0].url.path == "/s2s/v2.0/task/bg-nope"
    assert len(api.requests) == 1  # a 404 is never retried


async def test_404_on_a_credit_route_does_not_blame_the_feature() -> None:
    api = Recorder([api_json(404, {"status": 404, "error": "no such route"})])
    async with make_client(api) as client:
        with pytest.raises(NotFound) as info:
            await client.credit_balance()
    assert "BACKDROP_FEATURE" not in str(info.value)
    assert info.value.message == "no such route"


async def test_missing_key_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        BackdropClient(make_settings(api_key=None))
    assert "BACKDROP_API_KEY" in str(info.value)


def test_key_with_illegal_header_characters_is_refused_without_echoing_it() -> None:
    bad = "sk-line1\nsk-line2"
    with pytest.raises(ConfigError) as info:
        BackdropClient(make_settings(api_key=bad))
    assert "sk-line" not in str(info.value) and "sk-line" not in repr(info.value)


def test_api_url_without_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BACKDROP_API_URL"):
        BackdropClient(make_settings(api_url="api.test"), limiter=NoWait())


async def test_key_and_signed_query_never_appear_in_exception_text(tmp_path: Path) -> None:
    # A hostile or buggy server echoes the key and a signed URL back in its error message.
    signed = "https://bucket.test/out.jpg?X-Amz-Signature=deadbeef&X-Amz-Credential=abc"
    echo = {"status": 400, "error": f"bad {KEY} for {signed}", "error_code": "InvalidParameters"}
    api = Recorder([api_json(400, echo)])
    storage = Recorder([httpx.Response(403, text=f"expired {signed}")])
    async with make_client(api, storage, max_retries=0) as client:
        errors: list[BaseException] = []
        calls = (lambda: client.get_task(TASK), lambda: client.download(signed, tmp_path / "o.jpg"))
        for call in calls:
            try:
                await call()
            except Exception as exc:  # noqa: BLE001 - collecting both to inspect their text
                errors.append(exc)
    assert [type(e) for e in errors] == [InvalidParameters, Forbidden]
    for exc in errors:
        for text in (str(exc), repr(exc)):
            assert KEY not in text
            assert "X-Amz-Signature" not in text and "deadbeef" not in text
    assert "https://bucket.test/out.jpg" in str(errors[1])


async def test_transport_error_text_has_no_key_or_query(tmp_path: Path) -> None:
    storage = Recorder([httpx.ReadError(f"reset while reading ?sig={KEY}")])
    async with make_client(storage=storage, max_retries=0) as client:
        with pytest.raises(Exception) as info:
            await client.download("https://bucket.test/o.jpg?sig=secret", tmp_path / "o.jpg")
    for text in (str(info.value), repr(info.value)):
        assert KEY not in text and "sig=secret" not in text

