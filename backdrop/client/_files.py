"""The vendor's file section: register an upload (`POST /s2s/v2.0/file[/{feature}]`, free) and PUT the
bytes to the presigned storage URL it returns (unpaced, no Authorization header)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from backdrop.client import _parse
from backdrop.client._calls import ApiCalls
from backdrop.client._errors import error_from_response
from backdrop.client._http import Policy, exact_request, file_chunks
from backdrop.client.models import FileSpec, UploadSlot
from backdrop.errors import InvalidParameters

__all__ = ["FileCalls"]


class FileCalls(ApiCalls):
    """`BackdropClient`'s upload methods."""

    async def request_upload(
        self, *, file_name: str, content_type: str, file_size: int
    ) -> UploadSlot:
        """Register a file and get its presigned upload request (free)."""
        spec: FileSpec = {"content_type": content_type, "file_name": file_name, "file_size": file_size}
        data, request_id = await self._file_call([spec])
        return _parse.upload_slot(data, request_id)

    async def request_uploads(self, files: Sequence[FileSpec], *,
                              more: Callable[[], Sequence[FileSpec]] | None = None) -> list[UploadSlot]:
        """Register several files in one call (free): one slot per file answered, in the vendor's order.

        `more` is asked once, right before the request first leaves (after any wait for the rate limiter), for files
        to add to this call: a call that waited carries the files that came meanwhile. The caller checks that it got
        as many slots as it asked for (`backdrop.pipeline.batching`)."""
        data, request_id = await self._file_call(list(files), more)
        return _parse.upload_slots(data, request_id)

    async def _file_call(self, files: list[FileSpec],
                         more: Callable[[], Sequence[FileSpec]] | None = None) -> tuple[object, str | None]:
        s = self.settings
        path = f"/s2s/v2.0/file/{self._slug()}" if s.upload_route == "feature" else "/s2s/v2.0/file"
        items = [_item(f) for f in files]
        asked = more is None

        def add_more() -> bool:  # the body's list, filled in before it is first sent (retries send the same)
            nonlocal asked
            if not asked:
                asked = True
                items.extend(_item(f) for f in more())  # type: ignore[misc]
            return True

        return await self._call(
            "file", "POST", path, "data", json={"files": items}, feature_route=s.upload_route == "feature",
            before_send=add_more,
        )

    async def put_file(self, slot: UploadSlot, path: Path) -> None:
        """PUT the file, streamed from disk, with exactly `slot.headers` and no Authorization."""
        if not slot.url.startswith(("http://", "https://")):
            raise InvalidParameters("the upload slot has no usable URL (need http:// or https://)")
        size = path.stat().st_size
        headers = dict(slot.headers)
        declared = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
        if declared is None:
            # framing only: presigned storage refuses a chunked body
            headers["Content-Length"] = str(size)
        elif declared.strip() != str(size):
            raise InvalidParameters(
                f"{path.name} is {size} bytes but its upload slot was requested for "
                f"{declared.strip()}"
            )

        async def attempt() -> None:
            chunks = file_chunks(path)
            request = exact_request(self._storage, slot.method, slot.url, headers, chunks)
            resp = await self._storage.send(request)
            if not resp.is_success:
                raise error_from_response(resp, with_url=True)

        await self._retrier.run("put", Policy.IDEMPOTENT, attempt, paced=False)

    async def upload_file(
        self, path: Path, *, content_type: str, file_name: str | None = None
    ) -> str:
        """Request a slot and PUT the file; returns the `file_id`."""
        slot = await self.request_upload(
            file_name=file_name or path.name,
            content_type=content_type,
            file_size=path.stat().st_size,
        )
        await self.put_file(slot, path)
        return slot.file_id


def _item(f: FileSpec) -> dict[str, object]:
    return {"content_type": f["content_type"], "file_name": f["file_name"], "file_size": f["file_size"]}
