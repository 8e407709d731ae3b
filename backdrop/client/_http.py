"""httpx client builders and the retry rules, decided in one place by error type."""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from backdrop import __version__
from backdrop.errors import (
    BackdropError,
    ConfigError,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    TaskTimeout,
)
from backdrop.fences import AddressFence, fenced_transport, origin_of, parse_networks
from backdrop.settings import BackdropSettings

USER_AGENT = f"backdrop/{__version__}"


class Policy(enum.Enum):
    """How a request may be repeated."""

    #: GETs, the free upload-slot POST, the storage PUT, the download
    IDEMPOTENT = "idempotent"
    #: task create: a second send may bill twice, so only refusals and unsent requests repeat
    CREATE = "create"
    #: other non-idempotent POSTs (delete): same rule as create, without the ambiguity error
    UNSAFE = "unsafe"


def should_retry(err: BackdropError, policy: Policy) -> bool:
    if isinstance(err, (RateLimited, NotSent)):
        return True
    if policy is not Policy.IDEMPOTENT:
        return False
    # A timed-out task answers TaskTimeout to every later poll: repeating cannot help.
    if isinstance(err, TaskTimeout):
        return False
    return isinstance(err, (ServerError, OutcomeUnknown))


def backoff_delay(retry: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(retry-1))] for the 1-based `retry`."""
    ceiling = min(cap, base * (2 ** (retry - 1)))
    return rng.uniform(0.0, ceiling)


def timeout_from_settings(settings: BackdropSettings) -> httpx.Timeout:
    read = settings.read_timeout_seconds
    return httpx.Timeout(connect=settings.connect_timeout_seconds, read=read, write=read, pool=read)


def api_key_or_raise(settings: BackdropSettings) -> str:
    key = settings.api_key_value()
    if not key or not key.strip():
        raise ConfigError(
            "no API key: set BACKDROP_API_KEY "
            "(or name a Prefect Secret block in BACKDROP_API_KEY_BLOCK)"
        )
    key = key.strip()
    # httpx would echo an illegal header value in its exception; refuse it here without the value.
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigError("BACKDROP_API_KEY holds characters an HTTP header cannot carry")
    return key


def check_api_url(settings: BackdropSettings) -> str:
    url = settings.api_url.strip()
    if not url.startswith(("http://", "https://")):
        raise ConfigError("BACKDROP_API_URL must start with http:// or https://")
    return url.rstrip("/")


def build_api_client(
    settings: BackdropSettings, key: str, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=check_api_url(settings),
        headers={
            "Authorization": f"Bearer {key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        },
        timeout=timeout_from_settings(settings),
        transport=transport,
        follow_redirects=False,
    )


def build_storage_client(
    settings: BackdropSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """For presigned PUTs and result downloads: no Authorization header, ever. Fenced like preflight's fetches
    (backdrop/fences.py): public addresses, BACKDROP_FETCH_ALLOW_NETWORKS, and the API's own host."""
    if transport is None:
        _, host, port = origin_of(check_api_url(settings))
        fence = AddressFence(parse_networks(settings.fetch_allow_networks), frozenset({(host, port)}))
        transport = fenced_transport(fence)
    return httpx.AsyncClient(timeout=timeout_from_settings(settings), transport=transport, trust_env=False)


_FRAMING = {"host", "content-length", "transfer-encoding"}


def exact_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    content: AsyncIterator[bytes],
) -> httpx.Request:
    """A request carrying exactly `headers` plus framing: httpx's defaults (Accept, User-Agent...)
    are dropped, since a presigned URL may sign the header set."""
    request = client.build_request(method, url, headers=headers, content=content)
    wanted = {k.lower() for k in headers} | _FRAMING
    for name in [k for k in request.headers if k.lower() not in wanted]:
        del request.headers[name]
    return request


async def file_chunks(path: Path, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    """The file's bytes, read off the event loop; a fresh iterator per attempt."""
    with open(path, "rb") as fh:  # noqa: ASYNC230 - only the open is on the loop; every read is off it
        while chunk := await asyncio.to_thread(fh.read, chunk_size):
            yield chunk
