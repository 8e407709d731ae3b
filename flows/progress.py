"""A batch's progress through Prefect events: the flow emits one per picture done, a watcher follows them.

The flow emits `backdrop.batch.progress` (resource `backdrop.batch.<flow run id>`, payload done/total/status)
next to its progress artifact. `follow_progress` is what the CLI's progress bar (and a test) uses: it subscribes
to those events from a thread of its own, started by the flow's `on_running` hook, and hands each of that run's
steps to a callback. Progress is best effort both ways: nothing here can fail a run (the hook waits at most
`connect_timeout` for the subscription).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from prefect import Flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.events import emit_event

__all__ = ["PROGRESS_EVENT", "ProgressCallback", "emit_progress", "follow_progress"]

PROGRESS_EVENT = "backdrop.batch.progress"
_RESOURCE = "backdrop.batch."

P = ParamSpec("P")
R = TypeVar("R")

#: called with (done, total, status) for each picture the followed run finishes
ProgressCallback = Callable[[int, int, str], None]

_log = logging.getLogger(__name__)


def emit_progress(run_id: str, done: int, total: int, status: str) -> None:
    """Tell Prefect a picture of run `run_id` finished (emitted in the background, never raises)."""
    try:
        emit_event(PROGRESS_EVENT, resource={"prefect.resource.id": f"{_RESOURCE}{run_id}"},
                   payload={"done": done, "total": total, "status": status})
    except Exception as exc:  # noqa: BLE001 - progress is best effort
        _log.debug("progress event not emitted: %s", exc)


class _Follower:
    """The subscriber thread: its own event loop, reading Prefect's event stream."""

    def __init__(self, on_progress: ProgressCallback) -> None:
        self.on_progress = on_progress
        self.run_id: str | None = None
        self.ready = threading.Event()
        self.complete = threading.Event()  # the followed run's last picture was seen
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name="backdrop-progress", daemon=True)

    def start(self, run_id: str, timeout: float) -> None:
        """Follow run `run_id`'s events, once subscribed (or after `timeout` seconds)."""
        self.run_id = run_id
        self._thread.start()
        self.ready.wait(timeout)

    def stop(self, drain: float) -> None:
        """Stop following, once the last picture's event arrived or after `drain` seconds."""
        if not self._thread.is_alive():
            return
        self.complete.wait(drain)
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(5)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - a progress bar that stops never costs the run
            _log.debug("progress follower stopped: %s", exc)
        finally:
            self.ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        await self._follow()

    async def _follow(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        # the subscriber sets the time window itself (from a minute ago on): older runs' events are skipped below
        wanted = EventFilter(event=EventNameFilter(name=[PROGRESS_EVENT]))
        async with get_events_subscriber(filter=wanted) as events:
            self.ready.set()
            async for event in events:
                if event.resource.id != f"{_RESOURCE}{self.run_id}":
                    continue  # another run's (the subscriber replays the last minute's too)
                p = event.payload
                done, total = int(p["done"]), int(p["total"])
                self.on_progress(done, total, str(p["status"]))
                if done >= total:
                    self.complete.set()


@contextmanager
def follow_progress(flow: Flow[P, R], on_progress: ProgressCallback, *,
                    connect_timeout: float = 10.0, drain: float = 2.0) -> Iterator[Flow[P, R]]:
    """Follow the progress of one run of `flow`: yields the flow to call (the same flow, with an `on_running`
    hook that subscribes to the run's events); `on_progress` is called from the follower's thread. On leaving,
    the events still on their way get `drain` seconds to arrive."""
    follower = _Follower(on_progress)

    async def _follow_this_run(flow: Flow[P, R], flow_run: FlowRun, state: State[Any]) -> None:
        # subscribe once the run exists (Prefect's API is up by then), before its body emits anything
        await asyncio.to_thread(follower.start, str(flow_run.id), connect_timeout)

    try:
        yield flow.with_options(on_running=[*flow.on_running_hooks, _follow_this_run])
    except BaseException:
        follower.stop(0)  # interrupted: nothing to wait for
        raise
    follower.stop(drain)
