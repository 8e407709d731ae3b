"""`page_size` / `starting_token` pagination, with opaque tokens like the vendor's (`MjA`)."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from . import responses
from ._common import Reject


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset = int(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Reject(responses.invalid("Invalid starting_token")) from None
    if offset < 0:
        raise Reject(responses.invalid("Invalid starting_token"))
    return offset


def page_params(request: Request, *, max_size: int, default: int = 20) -> tuple[int, int]:
    """(offset, page_size) from the query; 400 InvalidParameters when out of range."""
    raw = request.query_params.get("page_size")
    try:
        size = default if raw in (None, "") else int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= max_size:
        raise Reject(responses.invalid(f"page_size should be between 1 and {max_size}"))
    token = request.query_params.get("starting_token")
    start = 0 if token in (None, "", "null") else decode_token(token)
    return start, size
