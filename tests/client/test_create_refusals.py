"""Issue 11, "sent means maybe": once a create may have left, only a definite refusal means "not created".

The oracle `expected` states the rule independently of the client's code:
* refused: the vendor's error body (`{status, error|error_code}`, `status` equal to the HTTP status) with a 4xx
  (not the documented 500 `unknown_internal_error` on a create from a file id: it is the generic internal error too);
* not sent: ConnectError / ConnectTimeout / PoolTimeout (NotSent);
* created: a 200 whose `data.task_id` is a non-empty string;
* ambiguous: everything else (other 5xx, a 4xx or 5xx without the vendor's body, an undecodable 200, a 200
  without a task id, any exception raised once the request was handed to the transport).

Every answer goes through `steps.create_task` with a real SQLite ledger: refused and not sent leave the row
`failed`, ambiguous leaves it `ambiguous`, and no create is ever sent twice.
"""

from __future__ import annotations

import gzip
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from backdrop.errors import (
    AmbiguousCreate,
    FileNotUploaded,
    InvalidParameters,
    NotFound,
    NotSent,
    RateLimited,
    ServerError,
    TaskTimeout,
    is_definite_refusal,
)
from backdrop.pipeline import steps
from backdrop.store.ledger import Ledger
from tests.client.helpers import Recorder, make_client

pytestmark = pytest.mark.anyio

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Raise:
    """A transport step that takes the request (reads its body) and then raises `exc`."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        raise self.exc

    def __repr__(self) -> str:
        return f"Raise({self.exc!r})"


@dataclass
class Answer:
    """One HTTP answer, built afresh (and decoded lazily, as from the network) for each request."""

    status: int
    raw: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        headers = {"x-request-id": "7301234567890123", **self.headers}
        return httpx.Response(self.status, headers=headers, stream=httpx.ByteStream(self.raw))

    def __repr__(self) -> str:
        raw = self.raw
        if raw.startswith(b"\x1f\x8b"):
            raw = b"gzip:" + gzip.decompress(raw)
        return f"{self.status}:{self.headers.get('content-encoding', '')}:{raw[:60]!r}"


def api_json(status: int, body: Any) -> Answer:
    return Answer(status, json.dumps(body).encode(), {"content-type": "application/json"})


def _vendor_shaped(status: int, body: Any) -> bool:
    if not isinstance(body, dict) or type(body.get("status")) is not int or body["status"] != status:
        return False
    return any(isinstance(body.get(k), str) and body[k].strip() for k in ("error", "error_code"))


def expected(step: Any, *, by_file: bool = True) -> str:
    """The classification of one create answer: created, refused, not_sent or ambiguous."""
    if isinstance(step, _NOT_SENT):
        return "not_sent"
    if isinstance(step, (BaseException, Raise)):
        return "ambiguous"
    status, headers, raw = step.status, step.headers, step.raw
    if headers.get("content-encoding") == "gzip":
        if not raw.startswith(b"\x1f\x8b"):
            return "ambiguous"  # the body cannot be decoded
        raw = gzip.decompress(raw)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if 200 <= status < 300:
        data = body.get("data") if isinstance(body, dict) else None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        ok = isinstance(task_id, str | int) and not isinstance(task_id, bool) and str(task_id).strip()
        return "created" if ok else "ambiguous"
    vendor = _vendor_shaped(status, body)
    if vendor and 400 <= status < 500:
        return "refused"
    return "ambiguous"  # the documented missing-upload 500 included: it is the generic internal error too


def html(status: int) -> Answer:
    return Answer(status, f"<html><body><h1>{status}</h1></body></html>".encode(), {"content-type": "text/html"})


def plain_labelled_gzip(body: Any) -> Answer:
    return Answer(200, json.dumps(body).encode(), {"content-type": "application/json", "content-encoding": "gzip"})


CREATED = {"status": 200, "data": {"task_id": "task-1"}}

ANSWERS: list[Any] = [
    # the named cases
    plain_labelled_gzip(CREATED),
    Raise(RuntimeError("the transport broke after sending")),
    html(502),
    api_json(503, {"status": 503, "error": "Service Unavailable"}),
    api_json(400, {"status": 400, "error": "bad prompt", "error_code": "InvalidParameters"}),
    api_json(500, {"status": 500, "error": "unknown_internal_error", "error_code": "unknown_internal_error"}),
    httpx.ConnectError("refused"),
    # definite refusals: the vendor's body with a 4xx
    api_json(400, {"status": 400, "error": "Insufficient units", "error_code": "CreditInsufficiency"}),
    api_json(401, {"status": 401, "error": "This API key is not recognized.", "error_code": "InvalidApiKey"}),
    api_json(404, {"status": 404, "error": "Not Found"}),
    api_json(429, {"status": 429, "error": "Too many requests"}),
    httpx.ConnectTimeout("slow connect"),
    httpx.PoolTimeout("no connection free"),
    # not the vendor's body, or not a refusal: maybe created
    html(400),
    html(404),
    html(429),
    html(500),
    html(504),
    api_json(404, {"detail": "Not Found"}),
    api_json(403, {"message": "Forbidden"}),  # a gateway's own JSON
    api_json(400, {"status": 502, "error": "mismatched status"}),
    api_json(400, {"status": "400", "error": "status as text"}),
    api_json(400, {"status": 400}),
    api_json(400, ["not", "an", "object"]),
    api_json(500, {"status": 500, "error": "Internal Server Error"}),
    # the documented missing-upload answer: not a refusal (the same answer is the generic internal error)
    api_json(500, {"status": 500, "error": "unknown_internal_error"}),
    api_json(500, {"status": 500, "error_code": "unknown_internal_error"}),
    api_json(500, {"status": 500, "error_code": "TaskTimeout"}),
    api_json(500, {"status": 500, "error": "unknown_internal_error", "error_code": "TaskTimeout"}),
    api_json(500, {"status": 500, "error": "Unknown_Internal_Error."}),
    api_json(503, {"status": 503, "error": "unknown_internal_error"}),
    api_json(409, "conflict"),
    api_json(200, {"status": 200, "data": {}}),
    api_json(200, {"status": 200, "data": {"task_id": ""}}),
    api_json(200, {"status": 200, "data": {"task_id": None}}),
    api_json(200, {"status": 200}),
    Answer(200, b"<html>proxy</html>"),
    Answer(200, b'{"status": 200, "data": {"task_id": "t'),
    Answer(200, b"[" * 100_000 + b"]" * 100_000),  # RecursionError in the parser
    plain_labelled_gzip({"status": 400, "error": "bad", "error_code": "InvalidParameters"}),
    httpx.ReadTimeout("no answer"),
    httpx.ReadError("reset"),
    httpx.RemoteProtocolError("eof"),
    httpx.WriteTimeout("slow"),
    Raise(ValueError("a parser's bug")),
    Raise(KeyError("task_id")),
    Raise(RecursionError("deep")),
    Raise(httpx.DecodingError("bad gzip")),
    # created
    api_json(200, CREATED),
    Answer(200, gzip.compress(json.dumps(CREATED).encode()), {"content-encoding": "gzip"}),
]


def _ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.claim("k", 1, run_id="r")
    return ledger


async def _create(step: Any, tmp_path: Path, *, by_file: bool = True) -> tuple[Any, Recorder, Ledger]:
    api = Recorder([step, api_json(200, {"status": 200, "data": {"task_id": "second"}})])
    ledger = _ledger(tmp_path)
    async with make_client(api, max_retries=0) as client:
        try:
            outcome: Any = await steps.create_task(
                client, ledger, key="k", attempt=1,
                src_file_id="file-1" if by_file else None,
                src_file_url=None if by_file else "https://img.test/a.jpg",
                prompt="beach", template_id=None, task_type="prompt",
            )
        except Exception as exc:  # noqa: BLE001 - the test inspects what the step raised
            outcome = exc
    return outcome, api, ledger


@pytest.mark.parametrize("step", ANSWERS, ids=repr)
async def test_a_create_answer_is_classified_and_recorded(step: Any, tmp_path: Path) -> None:
    outcome, api, ledger = await _create(step, tmp_path)
    entry = ledger.latest("k")
    assert len(api.requests) == 1  # never sent twice
    want = expected(step)
    if want == "created":
        assert outcome == "task-1" and entry.status == "created"
        return
    assert isinstance(outcome, Exception)
    if want == "ambiguous":
        assert isinstance(outcome, AmbiguousCreate), outcome
        assert not is_definite_refusal(outcome)
        assert (entry.status, entry.error_code) == ("ambiguous", "ambiguous_create")
        assert "reconcile" in str(outcome)
    else:
        assert is_definite_refusal(outcome), outcome
        assert not isinstance(outcome, AmbiguousCreate)
        assert isinstance(outcome, NotSent) == (want == "not_sent")
        assert entry.status == "failed"
        assert entry.error_code == outcome.report_code


async def test_a_create_answered_200_labelled_gzip_on_a_plain_body_is_ambiguous(tmp_path: Path) -> None:
    outcome, api, ledger = await _create(plain_labelled_gzip(CREATED), tmp_path)
    assert isinstance(outcome, AmbiguousCreate)
    assert isinstance(outcome.__cause__, httpx.DecodingError)
    assert ledger.latest("k").status == "ambiguous"
    assert len(api.requests) == 1


async def test_the_documented_missing_upload_500_is_ambiguous_not_a_refusal(tmp_path: Path) -> None:
    """The guide says a file never PUT answers this; it does not say every such answer made no task, and
    `unknown_internal_error` is the vendor's generic code. Taking it as "not created" would be a guess that can pay
    twice (an adversarial review's finding): the row waits for the vendor's records, with both causes named."""
    body = {"status": 500, "error": "unknown_internal_error", "error_code": "unknown_internal_error"}
    outcome, _, ledger = await _create(api_json(500, body), tmp_path)
    assert isinstance(outcome, AmbiguousCreate)
    cause = outcome.__cause__
    assert isinstance(cause, FileNotUploaded) and not cause.refused
    assert cause.error_code == "unknown_internal_error"  # the vendor's code is kept for the record
    assert "PUT never completed" in str(outcome) and "a task may have been made" in str(outcome)
    assert (ledger.latest("k").status, ledger.latest("k").task_id) == ("ambiguous", None)


async def test_the_missing_upload_500_on_a_create_from_a_url_is_ambiguous(tmp_path: Path) -> None:
    # the documented cause (a file never PUT) cannot apply: it is an internal error like any other
    step = api_json(500, {"status": 500, "error": "unknown_internal_error"})
    assert expected(step, by_file=False) == "ambiguous"
    outcome, _, ledger = await _create(step, tmp_path, by_file=False)
    assert isinstance(outcome, AmbiguousCreate)
    assert ledger.latest("k").status == "ambiguous"


async def test_a_404_on_a_create_names_both_likely_causes(tmp_path: Path) -> None:
    outcome, _, _ = await _create(api_json(404, {"status": 404, "error": "Not Found"}), tmp_path)
    assert isinstance(outcome, NotFound) and outcome.refused
    text = str(outcome)
    assert "no route for feature 'bg-replace'" in text and "BACKDROP_FEATURE" in text
    assert "does not know the file id" in text


async def test_a_refused_create_is_retried_only_for_429_and_never_after_an_ambiguous_answer() -> None:
    too_many = api_json(429, {"status": 429, "error": "Too many requests"})
    api = Recorder([too_many, html(429), api_json(200, CREATED)])
    async with make_client(api) as client:
        with pytest.raises(AmbiguousCreate):  # the HTML 429 is not the vendor's: maybe created
            await client.create_task(src_file_id="file-1")
    assert len(api.requests) == 2

    api = Recorder([too_many, too_many])
    async with make_client(api, max_retries=1) as client:
        with pytest.raises(RateLimited) as info:
            await client.create_task(src_file_id="file-1")
    assert is_definite_refusal(info.value) and len(api.requests) == 2


async def test_a_limiter_failure_before_sending_is_not_sent(tmp_path: Path) -> None:
    class Broken:
        async def acquire(self, *, can_wait: bool = False, starts_task: bool = False, due_in: float = 0.0,
                          defer: bool = False) -> int:
            raise RuntimeError("limiter database unavailable")

        async def settle(self, ticket: object) -> None:
            raise AssertionError("nothing to settle")

    api = Recorder([api_json(200, CREATED)])
    ledger = _ledger(tmp_path)
    async with make_client(api, limiter=Broken()) as client:  # type: ignore[arg-type]
        with pytest.raises(NotSent) as info:
            await steps.create_task(client, ledger, key="k", attempt=1, src_file_id="file-1", src_file_url=None,
                                    prompt=None, template_id=None, task_type="prompt")
    assert "RuntimeError" in str(info.value)  # the limiter's own failure, not a call it could not take
    assert api.requests == [] and ledger.latest("k").status == "failed"


async def test_a_limiter_failure_after_the_answer_keeps_the_created_task(tmp_path: Path) -> None:
    """Settling the slot only makes the pacing more precise: its failure (a pool timeout of the limiter's database,
    say) never turns a create's 200 into a lost answer, which would leave a paid task for the vendor's records."""
    class FailsToSettle:
        async def acquire(self, *, can_wait: bool = False, starts_task: bool = False, due_in: float = 0.0,
                          defer: bool = False) -> int:
            return 1

        async def settle(self, ticket: object, *, owe: str | None = None, paid: str | None = None) -> None:
            raise RuntimeError("QueuePool limit reached, connection timed out")

    api = Recorder([api_json(200, CREATED)])
    ledger = _ledger(tmp_path)
    async with make_client(api, limiter=FailsToSettle()) as client:  # type: ignore[arg-type]
        task_id = await steps.create_task(client, ledger, key="k", attempt=1, src_file_id="file-1",
                                          src_file_url=None, prompt=None, template_id=None, task_type="prompt")
    assert task_id == CREATED["data"]["task_id"]
    assert (ledger.latest("k").status, ledger.latest("k").task_id) == ("created", task_id)


async def test_an_error_after_the_client_returned_is_ambiguous_in_the_step(tmp_path: Path) -> None:
    # not a BackdropError and not from the transport: the step still must not say "never created"
    ledger = _ledger(tmp_path)

    class Exploding:
        async def create_task(self, **_: Any) -> Any:
            raise KeyError("task_id")

    with pytest.raises(AmbiguousCreate) as info:
        await steps.create_task(Exploding(), ledger, key="k", attempt=1,  # type: ignore[arg-type]
                                src_file_id="file-1", src_file_url=None, prompt=None, template_id=None,
                                task_type="prompt")
    assert isinstance(info.value.__cause__, KeyError)
    assert ledger.latest("k").status == "ambiguous"


async def test_a_locally_refused_create_is_failed_without_a_request(tmp_path: Path) -> None:
    api = Recorder([api_json(200, CREATED)])
    ledger = _ledger(tmp_path)
    async with make_client(api) as client:
        with pytest.raises(InvalidParameters):
            await steps.create_task(client, ledger, key="k", attempt=1, src_file_id=None, src_file_url=None,
                                    prompt=None, template_id=None, task_type="prompt")
    assert api.requests == [] and ledger.latest("k").status == "failed"


def test_refused_survives_pickling_as_prefect_does() -> None:
    err = NotFound("gone", status=404, refused=True)
    back = pickle.loads(pickle.dumps(err))
    assert back.refused and back.status == 404
    assert not pickle.loads(pickle.dumps(NotFound("html 404", status=404))).refused
    assert pickle.loads(pickle.dumps(FileNotUploaded("x", status=500))).report_code == "file_not_uploaded"


def test_task_timeout_is_not_retryable_anywhere() -> None:
    from tasks.policies import retry_if_transient

    class State:
        data = TaskTimeout("timed out", status=500, error_code="TaskTimeout")

    assert TaskTimeout.retryable is False and ServerError.retryable is True
    assert retry_if_transient(None, None, State()) is False


# ---- generated answers: the same oracle over (status, body, encoding, exception) drawn by Hypothesis ----------

_CODES = ["unknown_internal_error", "InvalidParameters", "CreditInsufficiency", "InvalidApiKey", "TaskTimeout",
          "InvalidTaskId", "BadRequest"]
_MESSAGES = ["unknown_internal_error", "Too many requests", "Task execution timed out", "Not Found", "", " "]
_EXCEPTIONS: list[BaseException | Raise] = [
    httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("busy"),
    httpx.ReadTimeout("lost"), httpx.ReadError("reset"), httpx.WriteError("broken pipe"),
    httpx.RemoteProtocolError("eof"), httpx.ProxyError("proxy"),
    Raise(RuntimeError("after sending")), Raise(ValueError("parse")), Raise(KeyError("task_id")),
    Raise(RecursionError("deep")), Raise(httpx.DecodingError("bad gzip")),
]


def _answers() -> Any:
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-2, 600) | st.text(max_size=12)
    json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                               | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)

    @st.composite
    def answer(draw: Any) -> Any:
        kind = draw(st.sampled_from(["exception", "vendor", "success", "json", "raw"]))
        if kind == "exception":
            return draw(st.sampled_from(_EXCEPTIONS))
        status = draw(st.sampled_from([200, 201, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504])
                      | st.integers(200, 599))
        if kind == "vendor":
            body: Any = {"status": draw(st.just(status) | st.integers(200, 599) | st.text(max_size=3))}
            for name, values in (("error", _MESSAGES), ("error_code", _CODES)):
                if draw(st.booleans()):
                    body[name] = draw(st.sampled_from(values) | scalars)
            raw = json.dumps(body).encode()
        elif kind == "success":
            data = draw(st.fixed_dictionaries({}, optional={"task_id": scalars, "task_status": scalars}) | scalars)
            raw = json.dumps({"status": 200, "data": data}).encode()
        elif kind == "json":
            raw = json.dumps(draw(json_values)).encode()
        else:
            raw = draw(st.sampled_from([b"<html><h1>Bad Gateway</h1></html>", b"", b"{", b"[" * 5000])
                       | st.binary(max_size=40))
        encoding = draw(st.sampled_from(["", "", "gzip", "gzip-mislabelled"]))
        headers = {"content-type": "application/json"}
        if encoding:
            headers["content-encoding"] = "gzip"
            raw = gzip.compress(raw) if encoding == "gzip" else raw
        return Answer(status, raw, headers)

    return answer()


def test_generated_create_answers_follow_the_rule(tmp_path: Path) -> None:
    pytest.importorskip("hypothesis")
    import anyio
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    counter = iter(range(10**9))

    @hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(step=_answers(), by_file=st.booleans())
    def check(step: Any, by_file: bool) -> None:
        key = f"k{next(counter)}"
        ledger.claim(key, 1, run_id="r")
        api = Recorder([step, api_json(200, {"status": 200, "data": {"task_id": "second"}})])

        async def run() -> Any:
            async with make_client(api, max_retries=0) as client:
                try:
                    return await steps.create_task(
                        client, ledger, key=key, attempt=1,
                        src_file_id="file-1" if by_file else None,
                        src_file_url=None if by_file else "https://img.test/a.jpg",
                        prompt="beach", template_id=None, task_type="prompt",
                    )
                except Exception as exc:  # noqa: BLE001 - inspected below
                    return exc

        outcome = anyio.run(run)
        entry = ledger.latest(key)
        want = expected(step, by_file=by_file)
        assert len(api.requests) == 1
        if want == "created":
            assert isinstance(outcome, str) and entry.status == "created"
        elif want == "ambiguous":
            assert isinstance(outcome, AmbiguousCreate), (want, outcome)
            assert entry.status == "ambiguous"
        else:
            assert is_definite_refusal(outcome) and not isinstance(outcome, AmbiguousCreate), (want, outcome)
            assert isinstance(outcome, NotSent) == (want == "not_sent")
            assert entry.status == "failed"

    check()
