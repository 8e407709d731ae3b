"""The API steps of one picture as plain async functions; `tasks/` wraps each in a Prefect task. `Steps` is the
interface the row lifecycle calls them through; `is_public_url` says whether the vendor may fetch a source itself.

create is the only step that costs money, and the only one never retried blindly: the ledger holds the
task id from the moment the vendor gives it, and a create whose answer was lost is `ambiguous`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlparse

from backdrop.client import BackdropClient, DownloadedFile, TaskStatus
from backdrop.errors import AmbiguousCreate, ClaimLost, Forbidden, PollDeadlineExceeded, is_definite_refusal
from backdrop.pipeline.batching import UploadBatcher
from backdrop.pipeline.plan import WorkItem
from backdrop.pipeline.polling import PollPlanner
from backdrop.pipeline.webhooks import WebhookReceiver
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger

__all__ = [
    "PollResult",
    "Steps",
    "create_task",
    "download_result",
    "file_sha256",
    "is_public_url",
    "upload_input",
    "wait_for_task",
]

async def upload_input(client: BackdropClient, path: Path, content_type: str,
                       slots: UploadBatcher | None = None) -> str:
    """Request an upload slot (through the run's `slots` batcher, if any) and PUT the staged bytes; returns the
    file id. Free; safe to repeat."""
    ext = ".png" if content_type == "image/png" else ".jpg"
    name = f"{path.stem}{ext}"
    if slots is None:
        return await client.upload_file(path, content_type=content_type, file_name=name)
    slot = await slots.slot({"content_type": content_type, "file_name": name, "file_size": path.stat().st_size})
    await client.put_file(slot, path)
    return slot.file_id


async def create_task(
    client: BackdropClient,
    ledger: Ledger,
    *,
    key: str,
    attempt: int,
    src_file_id: str | None,
    src_file_url: str | None,
    prompt: str | None,
    template_id: str | None,
    task_type: Literal["prompt", "template"],
    planner: PollPlanner | None = None,
) -> str:
    """Create the vendor task and record its id in the ledger before returning it (and the `polling_interval` its
    answer may carry in the run's `planner`).

    Only a definite refusal (`backdrop.errors.is_definite_refusal`: the vendor's 4xx error body, a connection
    never made) is re-raised as itself with the ledger `failed`
    (no task). Anything else may have made a task: the ledger says `ambiguous` and AmbiguousCreate is raised.
    """
    try:
        created = await client.create_task(
            # right before the request leaves (after any wait for the rate limiter): still ours? and now
            # is when it was sent, for whoever settles it if its answer is lost
            before_send=lambda: ledger.touch_claim(key, attempt),
            src_file_id=src_file_id,
            src_file_url=src_file_url,
            prompt=prompt if task_type == "prompt" else None,
            template_id=template_id if task_type == "template" else None,
            task_type=task_type,
        )
    except ClaimLost:
        raise  # another run settled this claim: its row is not ours to write
    except AmbiguousCreate as exc:
        ledger.mark(key, attempt, status="ambiguous", error_code=exc.report_code,
                    error_message=str(exc)[:500], request_id=exc.request_id)
        raise
    except Exception as exc:
        if is_definite_refusal(exc):
            code = getattr(exc, "report_code", type(exc).__name__)
            ledger.mark(key, attempt, status="failed", error_code=code, error_message=str(exc)[:500],
                        request_id=getattr(exc, "request_id", None))
            raise
        # not a refusal: the request may have left and made a task
        ambiguous = AmbiguousCreate(
            "the create may have reached the server and ended in an unexpected error; reconcile before "
            f"creating again ({type(exc).__name__}: {str(exc)[:300]})",
            status=getattr(exc, "status", None), request_id=getattr(exc, "request_id", None),
        )
        ledger.mark(key, attempt, status="ambiguous", error_code=ambiguous.report_code,
                    error_message=str(ambiguous)[:500], request_id=ambiguous.request_id)
        raise ambiguous from exc
    ledger.mark(key, attempt, status="created", task_id=created.task_id,
                request_id=created.request_id, file_id=src_file_id)
    if planner is not None:
        planner.observe_polling_interval(created.polling_interval)
    return created.task_id


@dataclass(frozen=True)
class PollResult:
    """The terminal status of a task and how many polls it took. Small: safe as a Prefect result.

    `gap_seconds`: from the last answer that said `running` (or from the start of the wait, or from the
    webhook's delivery) to the answer that found the task ended, the most it can have waited for that poll.
    """

    status: TaskStatus
    polls: int
    gap_seconds: float | None = None


#: a first poll that finds its task done, answered later than this share of its planned wait after it was asked for,
#: is not learned from
LEARN_LATENESS = 0.25


async def wait_for_task(
    client: BackdropClient,
    task_id: str,
    settings: BackdropSettings,
    *,
    sleep: Callable[[float], Awaitable[None]],
    now: Callable[[], float] = time.monotonic,
    first_delay: float | None = None,
    planner: PollPlanner | None = None,
    receiver: WebhookReceiver | None = None,
    since_created: float = 0.0,
) -> PollResult:
    """Poll until success or error, on the planner's schedule (see `backdrop.pipeline.polling`).

    With a webhook `receiver`, wait for the vendor's delivery and then poll once; a task with no delivery within
    the planner's `webhook_wait()` (lost, sent elsewhere, or still running) is polled anyway, then waited for again,
    so that it is never left longer without a poll than the planner allows.

    `first_delay` overrides the planner's first wait (0 to poll at once, e.g. when resuming). `since_created`: how
    long ago the create was answered (the handing over from the create step to this one took that long): the
    planner's first wait, and the first wait for a delivery, count from the create, as the vendor's window does.
    Raises PollDeadlineExceeded after `poll_deadline_seconds`: the task may still finish and be charged,
    so the row becomes pending_reconcile, never a re-create.
    """
    planner = planner or PollPlanner(settings)
    hooks = receiver if first_delay is None else None  # resuming (first_delay given): poll at once, as usual
    learn = first_delay is None and hooks is None
    delay = planner.first_delay() if first_delay is None else min(first_delay, planner.longest_wait())
    start = last_seen = now()
    late = max(0.0, since_created)  # taken off the first wait only
    # when the task was last known running (its create, a poll, a delivery): a poll the gap does not yet require
    # (`due_in` > 0) takes no room the limiter keeps for other tasks' polls
    mark = start - late
    polls = 0
    while True:
        remaining = settings.poll_deadline_seconds - (now() - start)
        if remaining <= 0:
            raise PollDeadlineExceeded(
                f"task still running after {settings.poll_deadline_seconds:.0f} s", task_id=task_id
            )
        delivered = False
        if hooks is not None:
            # The delivery only says the task ended (no result URL, no error code): one poll fetches them, at once
            # (`due_in` 0: it is sure to find the task ended, and a finished task's window is not published either)
            delivered = await hooks.wait(task_id, max(0.0, min(planner.webhook_wait() - late, remaining))) is not None
            if delivered:
                last_seen = now()  # the wait for the poll starts at the delivery
        else:
            await sleep(max(0.0, min(delay - late, remaining)))
        late = 0.0
        asked = now()
        due_in = 0.0 if delivered else max(0.0, planner.longest_wait() - (now() - mark))
        status = await client.get_task(task_id, due_in=due_in)
        polls += 1
        planner.observe_polling_interval(status.polling_interval)
        running = status.status == "running"
        if learn and polls == 1 and (running or now() - asked <= LEARN_LATENESS * delay):
            # the planner learns whether tasks are done at its first wait. A poll the limiter held back (an early
            # one waits while new pictures do) that finds its task done says nothing of that wait, and taught the
            # planner to poll ever sooner; one that finds it running says it ran past that wait too
            planner.observe_first_poll(done=not running)
        if status.status != "running":
            return PollResult(status=status, polls=polls, gap_seconds=round(now() - last_seen, 3))
        last_seen = mark = now()
        delay = planner.after_first(delay) if polls == 1 else planner.next_delay(delay)


async def download_result(
    client: BackdropClient, task_id: str, result_url: str | None, dest: Path, *, renewals: int = 2
) -> DownloadedFile:
    """Download the result atomically to `dest` with the extension of its bytes (`.jpg`, `.png`, `.webp`; the
    vendor publishes no output format); an expired URL is renewed by polling the task again."""
    url = result_url
    for attempt in range(renewals + 1):
        if url is None:
            url = (await client.get_task(task_id)).result_url
        try:
            return await client.download(url or "", dest, name_by_format=True)
        except Forbidden:
            if attempt == renewals:
                raise
            url = None
    raise AssertionError("unreachable")


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_public_url(source: str) -> bool:
    """True for an http(s) URL whose host the vendor could reach (not loopback, private or local)."""
    parsed = urlparse(source)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    host = parsed.hostname
    if host == "localhost" or host.endswith((".local", ".internal", ".localhost")):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return ip.is_global


class Steps(Protocol):
    """The API steps of one picture. `create` records its outcome in the ledger (see `steps.create_task`):
    `created` with the task id, `ambiguous` (raising AmbiguousCreate) or `failed` (a definite refusal)."""

    async def upload(self, item: WorkItem) -> str: ...

    async def create(self, item: WorkItem, attempt: int, file_id: str | None, file_url: str | None) -> str: ...

    async def wait(self, task_id: str, first_delay: float | None, feature: str, label: str = "",
                   since_created: float = 0.0) -> PollResult:
        """Poll `task_id` under `feature`, the slug its create was sent under (`pipeline.feature.created_under`).
        `label` (the row id) names the step in the UI only; `since_created`: see `wait_for_task`."""
        ...

    async def download(self, task_id: str, result_url: str | None, dest: Path, feature: str,
                       label: str = "") -> DownloadedFile: ...
