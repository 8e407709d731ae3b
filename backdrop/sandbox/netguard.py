"""What the sandbox may reach: its engine fetches `src_file_url`s and delivers webhooks for whoever holds a key,
so by default it reaches only public addresses (never loopback, private, link-local, multicast or reserved ones,
checked after DNS resolution and again on every redirect), unless `allow_private_fetch` is set. Also: is a bind
address loopback?
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["Blocked", "check_target", "is_loopback_host", "is_public"]


class Blocked(Exception):
    """A URL the sandbox refuses to reach; the message says why (no address is echoed back)."""


def is_public(address: str) -> bool:
    """A globally routable unicast address (an IPv4-mapped IPv6 address is judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_global and not ip.is_multicast


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise Blocked unless `url` is http(s) and (unless `allow_private`) every address its host resolves to
    is public. Resolution and connection are two steps: a host that re-resolves in between is not caught here."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise Blocked("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise Blocked("only http(s) URLs with a host")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, port or (443 if parts.scheme.lower() == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Blocked("host does not resolve") from None
    if not infos or not all(is_public(str(info[4][0])) for info in infos):
        raise Blocked("host resolves to a private, loopback or reserved address")


def is_loopback_host(host: str) -> bool:
    """A bind address only this machine can reach: 127.0.0.0/8, ::1 or localhost."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback
