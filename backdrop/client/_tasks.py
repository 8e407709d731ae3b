"""The vendor's task section (`/s2s/v2.0/task/...`): create a task (billable, never repeated once it may
have been sent), poll it, delete it, and list the feature's templates."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

from backdrop.client import _parse
from backdrop.client._calls import ApiCalls
from backdrop.client._http import Policy
from backdrop.client.models import CreatedTask, TaskStatus, Template
from backdrop.errors import AmbiguousCreate, InvalidParameters, InvalidTaskId, TaskTimeout

__all__ = ["TaskCalls"]


class TaskCalls(ApiCalls):
    """`BackdropClient`'s task and template methods."""

    async def create_task(
        self,
        *,
        src_file_id: str | None = None,
        src_file_url: str | None = None,
        prompt: str | None = None,
        template_id: str | None = None,
        task_type: Literal["prompt", "template"] | None = None,
        before_send: Callable[[], bool] | None = None,
    ) -> CreatedTask:
        """Start a task (billable on success). Never repeated once it may have been sent."""
        if (src_file_id is None) == (src_file_url is None):
            raise InvalidParameters("give exactly one of src_file_id and src_file_url", refused=True)
        body: dict[str, str] = {}
        for name, value in (
            ("src_file_id", src_file_id),
            ("src_file_url", src_file_url),
            ("type", task_type),
            ("prompt", prompt),
            ("template_id", template_id),
        ):
            if value is not None:
                body[name] = value
        data, request_id = await self._call(
            "create",
            "POST",
            f"/s2s/v2.0/task/{self._slug()}",
            "data",
            policy=Policy.CREATE,
            json=body,
            feature_route=True,
            create_from_file=src_file_id is not None,
            before_send=before_send,
            debt=_created_debt,
        )
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if isinstance(task_id, bool) or not isinstance(task_id, str | int) or not str(task_id).strip():
            raise AmbiguousCreate(
                "the create answered 200 without a task_id; reconcile before creating again",
                status=200,
                request_id=request_id,
            )
        return CreatedTask(task_id=str(task_id), request_id=request_id,
                           polling_interval=_parse.polling_interval(data))

    async def get_task(self, task_id: str, *, feature: str | None = None, due_in: float = 0.0) -> TaskStatus:
        """One poll, under `feature` (the slug the task was created under; default the settings'). An engine
        failure comes back as `status="error"`, not raised. The limiter is told whether the task still needs polls;
        `due_in`: this poll is that many seconds earlier than the poll gap requires (it waits for spare room)."""

        def debt(data: Any) -> tuple[str | None, str | None]:
            if not isinstance(data, dict):  # an answer that says nothing of the task: its room stays as it was
                return None, None
            running = str(data.get("task_status", "")).lower() not in ("success", "error")
            return (task_id, None) if running else (None, task_id)

        try:
            data, request_id = await self._call(
                "poll",
                "GET",
                f"/s2s/v2.0/task/{self._slug(feature)}/{quote(task_id, safe='')}",
                "data",
                feature_route=True,
                debt=debt,
                due_in=due_in,
            )
        except (InvalidTaskId, TaskTimeout):
            with contextlib.suppress(Exception):  # gone at the vendor: no poll will ever find it
                await self._retrier.limiter.paid(task_id)
            raise
        return _parse.task_status(task_id, data, request_id)

    async def delete_task(self, task_id: str) -> None:
        """Delete a finished task and its files (no refund)."""
        await self._call(
            "delete",
            "POST",
            "/s2s/v2.0/task/delete",
            None,
            policy=Policy.UNSAFE,
            json={"task_id": task_id},
        )

    async def list_templates(self, *, page_size: int = 20) -> list[Template]:
        """Every template of the feature (all pages)."""
        rows = await self._paged(
            "templates",
            f"/s2s/v2.0/task/template/{self._slug()}",
            "templates",
            "data",
            page_size,
        )
        return _parse.each(_parse.template, rows)


def _created_debt(data: Any) -> tuple[str | None, str | None]:
    """A create's answer: the task it names (if any) is owed polls from the moment its slot is settled."""
    task_id = data.get("task_id") if isinstance(data, dict) else None
    if isinstance(task_id, str | int) and not isinstance(task_id, bool) and str(task_id).strip():
        return str(task_id), None
    return None, None
