"""Helpers the route modules share: the key's state, JSON bodies, slugs, rejections."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from . import responses
from .gate import KEY
from .state import KeyState, Registry

SLUGS = frozenset({"bg-replace-v2", "bg-replace"})


class Reject(Exception):
    """Stop a handler and answer `response` (the app turns it back into the response)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def registry(request: Request) -> Registry:
    reg: Registry = request.app.state.registry
    return reg


def key_state(request: Request) -> KeyState:
    """The state of the key the gate authenticated."""
    return registry(request).state(request.scope[KEY])


def check_slug(slug: str) -> None:
    if slug not in SLUGS:
        raise Reject(responses.json_body(responses.NOT_FOUND))


def type_name(value: Any) -> str:
    """JSON-schema validator wording for a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def wrong_type(value: Any, allowed: str, field: str | None = None) -> Reject:
    prefix = f"{field}: " if field else ""
    return Reject(responses.invalid(
        f'{prefix}instance type ({type_name(value)}) does not match any allowed primitive type '
        f'(allowed: ["{allowed}"])'
    ))


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise Reject(responses.invalid("Request body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise wrong_type(body, "object")
    return body


def missing(*names: str) -> Reject:
    listed = ",".join(f'"{n}"' for n in names)
    return Reject(responses.invalid(f"Object has missing required properties ([{listed}])"))


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")
