"""Where Backdrop's own fetches may go: input pictures (preflight) and result downloads.

A CSV author chooses the URLs preflight fetches, and the vendor (or whoever controls its storage) chooses the
result URLs; both run inside the company's network. So every connection is fenced at the socket:

* The host is resolved, **every** address it resolves to is checked, and the connection is made to a checked
  address (never resolved a second time, so DNS rebinding gains nothing). Loopback, private, link-local,
  shared (CGNAT), multicast, reserved and unspecified addresses are refused, also when they hide inside an
  IPv6 address (IPv4-mapped, 6to4, Teredo, NAT64).
* Redirects are followed by httpx one hop at a time, and each hop opens its connection through the same fence.
* `BACKDROP_FETCH_ALLOW_NETWORKS` (CIDRs) opens named networks, e.g. an internal picture catalogue.
* `trusted` origins (the configured API's own host and port: the sandbox on loopback) are not checked.

`redact_url` keeps signatures out of what Backdrop writes: the query string of a URL that looks presigned.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpcore
import httpx
from pydantic import AfterValidator

__all__ = ["AddressFence", "FetchLimits", "FetchRefused", "NetworkList", "fenced_sync_transport", "fenced_transport",
           "fetch_limits",
           "forbidden_reason", "origin_of", "parse_networks", "redact_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class FetchRefused(Exception):  # a refusal, not a failure: not named ...Error
    """A fetch the fence refused before any byte was sent."""


def parse_networks(text: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs separated by commas or spaces (or a list); a bare address is its own /32 or /128."""
    words = text.replace(",", " ").split() if isinstance(text, str) else [str(w).strip() for w in text]
    try:
        return tuple(ipaddress.ip_network(w, strict=False) for w in words if w)
    except ValueError as exc:
        raise ValueError(f"not a network (CIDR such as 10.20.0.0/16): {exc}") from None


def _networks_text(text: str) -> str:
    return ",".join(str(n) for n in parse_networks(text))


#: a settings field holding CIDRs, checked and normalised when the settings are read
NetworkList = Annotated[str, AfterValidator(_networks_text)]


def _embedded(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why Backdrop must not connect to `ip` unless allowed (None: a public address)."""
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:
        return "not public"
    inner = _embedded(ip)
    return forbidden_reason(inner) if inner is not None else None


def origin_of(url: str | httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in."""
    u = httpx.URL(str(url))
    port = u.port or (443 if u.scheme == "https" else 80)
    return u.scheme, u.host.lower().rstrip("."), port


@dataclass(frozen=True)
class AddressFence:
    """What a connection may reach: public addresses, `allow`ed networks, and the `trusted` (host, port)s."""

    allow: tuple[IPNetwork, ...] = ()
    trusted: frozenset[tuple[str, int]] = frozenset()

    def check(self, host: str, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in self.allow):
            return
        inner = _embedded(ip)
        if inner is not None and any(inner in net for net in self.allow):
            return
        reason = forbidden_reason(ip)
        if reason:
            where = host if host == address else f"{host} ({address})"
            raise FetchRefused(f"{where} is a {reason} address; BACKDROP_FETCH_ALLOW_NETWORKS opens a network")

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to, each checked; refused if any one is not allowed."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            self.check(host, str(literal))
            return [str(literal)]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve the host: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:  # all of them: a name that also points inside is refused outright
            self.check(host, address)
        if not addresses:
            raise httpcore.ConnectError("the host resolves to no address")
        return addresses


class _FencedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the fence checked."""

    def __init__(self, fence: AddressFence, inner: httpcore.AsyncNetworkBackend) -> None:
        self._fence, self._inner = fence, inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's AsyncNetworkBackend signature
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        if (host.lower().rstrip("."), port) in self._fence.trusted:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        failure: Exception | None = None
        for address in await self._fence.resolve(host, port):
            try:  # TLS (SNI, certificate) still checks `host`: httpcore starts it with the origin's name
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # noqa: S101 - resolve() returns an address or raises (narrows the type)
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's AsyncNetworkBackend signature
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def fenced_transport(fence: AddressFence, **kwargs: Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection (each redirect hop included) goes through `fence`."""
    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = transport._pool  # httpx exposes no network_backend argument; the pool takes one
    pool._network_backend = _FencedBackend(fence, pool._network_backend)
    return transport


class _FencedSyncBackend(httpcore.NetworkBackend):
    """The same fence for blocking clients (the CSV fetch): resolve, check every address, connect to it."""

    def __init__(self, fence: AddressFence, inner: httpcore.NetworkBackend) -> None:
        self._fence, self._inner = fence, inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
            addresses = [str(literal)]
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise httpcore.ConnectError(f"cannot resolve the host: {exc}") from exc
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            self._fence.check(host, address)
        failure: Exception = httpcore.ConnectError("the host resolves to no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        raise FetchRefused("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def fenced_sync_transport(fence: AddressFence, **kwargs: Any) -> httpx.HTTPTransport:
    """A blocking httpx transport whose every connection goes through `fence`."""
    transport = httpx.HTTPTransport(**kwargs)
    pool = transport._pool
    pool._network_backend = _FencedSyncBackend(fence, pool._network_backend)
    return transport


@dataclass(frozen=True)
class FetchLimits:
    """The fences of one fetch: where it may connect, how long it may take, how many bytes it may read."""

    fence: AddressFence
    deadline_seconds: float
    max_bytes: int


_LIMIT_VARIABLES = ("BACKDROP_FETCH_ALLOW_NETWORKS", "BACKDROP_FETCH_DEADLINE_SECONDS", "BACKDROP_FETCH_MAX_BYTES")


def fetch_limits() -> FetchLimits:
    """The limits for input fetches, from the settings (BACKDROP_FETCH_*); read once per distinct environment."""
    return _limits(tuple(os.environ.get(name) for name in _LIMIT_VARIABLES))


@functools.lru_cache(maxsize=8)
def _limits(_env: tuple[str | None, ...]) -> FetchLimits:
    from backdrop.settings import BackdropSettings

    s = BackdropSettings()
    return FetchLimits(AddressFence(parse_networks(s.fetch_allow_networks)), s.fetch_deadline_seconds,
                       s.fetch_max_bytes)


#: query parameters that carry a signature or a credential (S3, GCS, Azure SAS, CloudFront, generic tokens)
_SIGNED = ("signature", "sig", "x-amz-", "x-goog-", "se", "sp", "sv", "skoid", "token", "key-pair-id", "policy",
           "expires", "credential", "awsaccesskeyid", "access_token", "auth", "key", "secret", "password")


def redact_url(value: str) -> str:
    """`value` with the query string of a presigned-looking URL replaced by `?…` (anything else unchanged).

    A URL is presigned-looking when a query parameter's name is signature-like (X-Amz-Signature, sig, token...).
    User info is dropped from every URL. Local paths, and URLs with plain queries (`?w=640`), are kept as they are.
    """
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    names = [k.lower() for k, _ in parse_qsl(query, keep_blank_values=True)]
    if any(n == s or (s.endswith("-") and n.startswith(s)) or n.endswith(("signature", "token")) for n in names
           for s in _SIGNED):
        query = "…"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
