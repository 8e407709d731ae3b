"""What settling asks the vendor about candidate charges (`Vendor`), and `ClientVendor`, that over the HTTP client.

`ClientVendor` fetches each charged task's result once, judges it against the lost create's staged input
(`backdrop.pipeline.evidence`), and keeps it where a person looks (`candidate_picture`, shown by the gallery).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from backdrop.client import BackdropClient, TaskStatus
from backdrop.client.models import CreditHistoryEntry
from backdrop.errors import BackdropError, InvalidTaskId
from backdrop.files import atomic_write
from backdrop.pipeline.evidence import Verdict, keeps_subject
from backdrop.pipeline.feature import created_under
from backdrop.pipeline.history import UNTARGETED
from backdrop.store.ledger import LedgerEntry

__all__ = ["ClientVendor", "Vendor", "candidate_picture"]


class Vendor(Protocol):
    """What settling needs from the vendor (the client in production, a fake in the model test)."""

    async def history_page(self, token: str | None) -> tuple[list[CreditHistoryEntry], str | None]: ...

    async def picture_verdict(self, task_id: str, entry: LedgerEntry) -> Verdict: ...

    async def show(self, task_ids: list[str]) -> None:
        """Keep the candidates' pictures where a person will look (the gallery); best effort."""
        ...


class ClientVendor:
    """`Vendor` over the HTTP client: history pages, and a charged task's result judged against the staged
    input of the lost create (`inputs`: image sha256 -> staged file). Each result is fetched once."""

    def __init__(self, client: BackdropClient, inputs: dict[str, str], tmp: Path,
                 keep: Path | None = None) -> None:
        self.client, self.inputs, self.tmp, self.keep = client, inputs, tmp, keep
        self._results: dict[str, bytes | None] = {}

    async def history_page(self, token: str | None) -> tuple[list[CreditHistoryEntry], str | None]:
        return await self.client.credit_history_page(token)

    async def _result(self, task_id: str, slugs: tuple[str, ...] = ("bg-replace", "bg-replace-v2")) -> bytes | None:
        """The charged task's result, polled under each of `slugs` until one knows it (a task answers only under
        the slug it was created under): a lost create's candidate under that create's slug, any other under
        either (polls are free)."""
        kept = candidate_picture(self.keep, task_id) if self.keep is not None else None
        if task_id not in self._results and kept is not None:
            self._results[task_id] = kept.read_bytes()  # fetched by an earlier pass, maybe before the vendor forgot
        if task_id not in self._results:
            try:
                status = await self._poll(task_id, slugs)
                got = None
                if status.status == "success" and status.result_url:
                    got = await self.client.download(status.result_url, self.tmp / f"{len(self._results)}.img")
                self._results[task_id] = got.path.read_bytes() if got else None
            except (BackdropError, OSError):
                self._results[task_id] = None  # a charge we cannot look at proves nothing
        return self._results[task_id]

    async def _poll(self, task_id: str, slugs: tuple[str, ...]) -> TaskStatus:
        for slug in slugs[:-1]:
            try:
                return await self.client.get_task(task_id, feature=slug)
            except InvalidTaskId:
                continue
        return await self.client.get_task(task_id, feature=slugs[-1])

    async def show(self, task_ids: list[str]) -> None:
        """Save each candidate's result as `<keep>/<task id>.<jpg|png|webp>` (see `candidate_picture`)."""
        if self.keep is None:
            return
        for task_id in task_ids:
            if task_id.startswith(UNTARGETED):
                continue
            data = await self._result(task_id)
            if data is None or candidate_picture(self.keep, task_id) is not None:
                continue
            ext = "png" if data.startswith(b"\x89PNG") else "webp" if data[8:12] == b"WEBP" else "jpg"
            try:
                self.keep.mkdir(parents=True, exist_ok=True)

                def write(p: Path, d: bytes = data) -> None:
                    Path(p).write_bytes(d)

                atomic_write(self.keep / f"{_safe_id(task_id)}.{ext}", write)
            except OSError:
                continue  # a picture to look at is a convenience; the ledger already holds the candidates

    async def picture_verdict(self, task_id: str, entry: LedgerEntry) -> Verdict:
        staged = self.inputs.get(entry.image_sha256 or "")
        result = await self._result(task_id, (created_under(entry),)) if staged else None
        if staged is None or result is None:
            return "unknown"
        source = await asyncio.to_thread(Path(staged).read_bytes)
        return await asyncio.to_thread(keeps_subject, source, result)


def _safe_id(task_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in task_id)[:120]


def candidate_picture(folder: Path, task_id: str) -> Path | None:
    """The saved result of a candidate charge, if reconciliation could fetch it."""
    for ext in ("jpg", "png", "webp"):
        path = folder / f"{_safe_id(task_id)}.{ext}"
        if path.is_file():
            return path
    return None
