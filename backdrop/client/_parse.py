"""Read the API's JSON shapes (contract sections 3–8) into the client's models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from backdrop.client.models import (
    CreditBalance,
    CreditHistoryEntry,
    CreditLot,
    FeatureCost,
    TaskStatus,
    Template,
    UploadSlot,
)
from backdrop.errors import ServerError

T = TypeVar("T")

_UNKNOWN = {"", "none", "null"}
#: a `polling_interval` outside this range (seconds) is ignored: under 1 s no key's rate limit could keep up, over an
#: hour is longer than any task runs (a number in milliseconds lands there too)
POLLING_INTERVAL_RANGE = (1.0, 3600.0)


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_token: str | None


def _bad(what: str) -> ServerError:
    return ServerError(f"unexpected response body: {what}")


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _UNKNOWN else text


def _ms(value: Any) -> datetime | None:
    if value in (None, "", 0):
        return None
    return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)


def _amount(row: dict[str, Any]) -> float:
    value = row.get("amount_dec")
    if value is None:
        value = row.get("amount", 0)
    return float(value)


def normalise_headers(raw: Any) -> dict[str, str]:
    """Upload headers come as an object or as a list of `{name, value}`; values may be numbers."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list):
        out: dict[str, str] = {}
        for item in raw:
            if not isinstance(item, dict):
                raise _bad("upload header entry is not an object")
            name = item.get("name", item.get("key"))
            if not name:
                raise _bad("upload header entry has no name")
            out[str(name)] = str(item.get("value", ""))
        return out
    raise _bad("upload headers are neither an object nor a list")


def upload_slot(data: Any, request_id: str | None) -> UploadSlot:
    slots = upload_slots(data, request_id)
    if not slots:
        raise _bad("the File API answered no upload slot")
    return slots[0]


def upload_slots(data: Any, request_id: str | None) -> list[UploadSlot]:
    """Every slot of a File API answer (`data.files[]`), in order; an unreadable one fails the whole answer."""
    try:
        return [_slot(entry, request_id) for entry in data["files"]]
    except (KeyError, IndexError, TypeError) as exc:
        raise _bad(f"upload slot lacks {exc}") from None


def _slot(entry: Any, request_id: str | None) -> UploadSlot:
    req = entry["requests"][0]
    name = entry.get("file_name")
    return UploadSlot(
        file_id=str(entry["file_id"]),
        url=str(req["url"]),
        method=str(req.get("method") or "PUT").upper(),
        headers=normalise_headers(req.get("headers")),
        request_id=request_id,
        file_name=None if name is None else str(name),
    )


def _result_url(results: Any) -> str | None:
    if isinstance(results, dict):
        if results.get("url"):
            return str(results["url"])
        results = results.get("output")
    if isinstance(results, list) and results:
        first = results[0]
        if isinstance(first, dict) and first.get("url"):
            return str(first["url"])
        if isinstance(first, str):
            return first
    return None


def polling_interval(data: Any) -> float | None:
    """`data.polling_interval` in seconds (a number, or a numeric string), or None when absent or nonsense
    (not a finite number, a boolean, outside `POLLING_INTERVAL_RANGE`): it only ever shortens the wait between polls."""
    raw = data.get("polling_interval") if isinstance(data, dict) else None
    if raw is None or isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    low, high = POLLING_INTERVAL_RANGE
    return value if low <= value <= high else None  # NaN and infinities fail the comparison


def task_status(task_id: str, data: Any, request_id: str | None) -> TaskStatus:
    if not isinstance(data, dict):
        raise _bad("task data is not an object")
    raw = str(data.get("task_status", "")).lower()
    # Anything other than the two terminal states keeps the caller polling until its deadline.
    status = raw if raw in ("success", "error") else "running"
    return TaskStatus(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        result_url=_result_url(data.get("results")),
        error=_opt_str(data.get("error")) if status == "error" else None,
        error_message=_opt_str(data.get("error_message")),
        request_id=request_id,
        polling_interval=polling_interval(data),
    )


def page(content: Any, items_key: str) -> Page:
    if not isinstance(content, dict):
        raise _bad("page is not an object")
    items = content.get(items_key) or []
    if not isinstance(items, list):
        raise _bad(f"{items_key} is not a list")
    rows = [i for i in items if isinstance(i, dict)]
    return Page(items=rows, next_token=_opt_str(content.get("next_token")))


def template(row: dict[str, Any]) -> Template:
    return Template(
        id=str(row["id"]),
        title=row.get("title"),
        thumb=row.get("thumb"),
        category_name=row.get("category_name"),
    )


def _credit_lot(row: dict[str, Any]) -> CreditLot:
    return CreditLot(
        id=str(row["id"]),
        type=str(row.get("type", "")),
        amount=_amount(row),
        expiry=_ms(row.get("expiry")),
    )


def credit_balance(results: Any, *, now: datetime) -> CreditBalance:
    if not isinstance(results, list):
        raise _bad("credit results is not a list")
    lots = each(_credit_lot, [r for r in results if isinstance(r, dict)])
    total = sum(lot.amount for lot in lots if lot.expiry is None or lot.expiry > now)
    return CreditBalance(total=round(total, 6), lots=lots)


def history_entry(row: dict[str, Any]) -> CreditHistoryEntry:
    credits = (row.get("info") or {}).get("credits") or []
    timestamp = _ms(row.get("timestamp")) or datetime.fromtimestamp(0, tz=UTC)
    return CreditHistoryEntry(
        id=str(row["id"]),
        timestamp=timestamp,
        action=str(row.get("action", "")),
        target_id=_opt_str(row.get("target_id")),
        units=round(sum(_amount(c) for c in credits if isinstance(c, dict)), 6),
    )


def feature_cost(row: dict[str, Any]) -> FeatureCost:
    proc = row.get("proc_unit")
    return FeatureCost(
        description=str(row.get("description", "")),
        amount=float(row.get("amount", 0)),
        unit=str(row.get("unit", "")),
        proc_unit=float(proc) if proc is not None else None,
        run_task_url=row.get("run_task_url"),
    )


def each(parse: Callable[[dict[str, Any]], T], rows: list[dict[str, Any]]) -> list[T]:
    """Parse every row; a row missing a required field is a bad body, not a KeyError."""
    try:
        return [parse(r) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(f"row lacks or mistypes {exc}") from None
