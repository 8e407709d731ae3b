"""Backdrop's identities: the short, non-reversible ids it derives from the settings (account, server, key).

Every value here is persisted or shared between processes: `environment_id` and `key_id` in the ledger's rows,
`limiter_key_id` and `egress_limiter_key_id` in the database limiter's table, `slug_environment_id` in
ledgers written before issue 14 and `legacy_environment_id` in those written before issue 11.
Changing how any of them is computed would make a run miss what it already paid for (and pay again) or split
one API key's (or address's) limit in two: `tests/pipeline/test_identity.py` pins each to a literal.
Prefect-free; imports only the settings (and the host name, for `egress_id`).
"""

from __future__ import annotations

import hashlib
import socket
import unicodedata

from backdrop.settings import BackdropSettings, FeatureSlug, canonical_service

__all__ = ["CACHE_VERSION", "FEATURE_FAMILY", "FEATURE_SLUGS", "account_environment_ids", "content_key",
           "normalise_prompt", "environment_id", "key_id", "legacy_environment_id", "limiter_key_id",
           "process_limiter_key", "slug_environment_id", "egress_id",
           "egress_limiter_key_id", "process_egress_key"]

#: the two slugs of one paid feature (the live feature-cost list names bg-replace "AI Photo Background Change
#: V2.0"): a picture paid under either is paid, so both share one environment, named by this family
FEATURE_FAMILY = "photo-background-change"
FEATURE_SLUGS: tuple[FeatureSlug, ...] = ("bg-replace-v2", "bg-replace")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def environment_id(settings: BackdropSettings) -> str:
    """A short id of (account, server, feature family): what was paid for is shared by every key of one account,
    and by both slugs of the feature (`FEATURE_FAMILY`: whatever `BACKDROP_FEATURE` says or resolves to).

    The account is `BACKDROP_ACCOUNT` (one name per vendor account sharing a ledger); the server is
    `canonical_service(api_url)`: the vendor's host aliases are one server, a sandbox is `loopback:<port>` (one
    restarted on another port is a new server that knows none of the old one's tasks). Neither the key (rotating
    it must not pay for everything again) nor the URL's spelling counts.
    """
    return _sha256(f"{settings.account}\n{canonical_service(settings.api_url)}\n{FEATURE_FAMILY}")[:16]


def slug_environment_id(settings: BackdropSettings, feature: FeatureSlug) -> str:
    """The environment id rows carried from issue 11 to issue 14: (account, server, one slug)."""
    return _sha256(f"{settings.account}\n{canonical_service(settings.api_url)}\n{feature}")[:16]


def key_id(settings: BackdropSettings) -> str | None:
    """A short, non-reversible id of the API key itself (None without a key), for the ledger's `key_id`."""
    value = settings.api_key_value()
    if not value:
        return None
    return _sha256(f"backdrop-key-id\n{value}")[:16]


def legacy_environment_id(settings: BackdropSettings, feature: FeatureSlug) -> str:
    """The account id every ledger row carried before issue 11: the URL as spelled, the key itself, the slug."""
    return _sha256(f"{settings.api_url.rstrip('/')}\n{settings.api_key_value()}\n{feature}")[:16]


def account_environment_ids(settings: BackdropSettings) -> dict[str, FeatureSlug | None]:
    """Every environment id this account's rows may carry, each with the slug it implies (None: the family's,
    where each row records its own): the current one, then the per-slug ids of the two releases before."""
    ids: dict[str, FeatureSlug | None] = {environment_id(settings): None}
    for slug in FEATURE_SLUGS:
        ids.setdefault(slug_environment_id(settings, slug), slug)
        ids.setdefault(legacy_environment_id(settings, slug), slug)
    return ids


def limiter_key_id(settings: BackdropSettings) -> str:
    """A stable id for (server, API key) that does not reveal the key, the database limiter's `key_id`: the
    vendor counts per key, and the server's host aliases are one server (`canonical_service`), so they share one
    limit."""
    return _sha256(f"{canonical_service(settings.api_url)}\n{settings.api_key_value() or ''}")[:32]


def process_limiter_key(settings: BackdropSettings) -> tuple[str, str]:
    """(server, key digest): which in-process limiter a client shares (with the limits, in
    `backdrop.pacing.memory.shared_limiter`). Host aliases are one server, so one limit."""
    return canonical_service(settings.api_url), _sha256(settings.api_key_value() or "")[:16]


def egress_id(settings: BackdropSettings) -> str:
    """The name of the address this host's requests leave through: `BACKDROP_EGRESS_ID`, else the host name.

    The vendor also counts requests per client address; Backdrop cannot see its public address without asking
    someone, so keys that leave through one address must share one name (hosts behind one NAT: set the same
    value on each, with a shared `BACKDROP_LIMITER_URL`)."""
    return settings.egress_id or socket.gethostname() or "localhost"


def egress_limiter_key_id(settings: BackdropSettings) -> str:
    """The database limiter's `key_id` of the egress address's budget on this server, shared by every key:
    `ip:` and a digest of (server, egress id)."""
    return "ip:" + _sha256(f"egress\n{canonical_service(settings.api_url)}\n{egress_id(settings)}")[:32]


def process_egress_key(settings: BackdropSettings) -> tuple[str, str]:
    """(server, egress id): which in-process egress budget a client shares, whatever its key."""
    return canonical_service(settings.api_url), egress_id(settings)


def normalise_prompt(prompt: str | None) -> str | None:
    """The prompt as it is sent, keyed and reported: Unicode NFC, trimmed, each run of whitespace one space;
    case is kept. None for no prompt or only whitespace. "beach", "beach " and "beach\\n" are one paid picture."""
    if prompt is None:
        return None
    return " ".join(unicodedata.normalize("NFC", prompt).split()) or None


#: bump to make every cached create/upload miss on purpose (e.g. after the vendor changes the model)
CACHE_VERSION = "v1"


def content_key(
    *,
    image_sha256: str,
    prompt: str | None,
    template_id: str | None,
    task_type: str,
    environment: str,
) -> str:
    """The identity of one paid picture: image bytes, the prompt (normalised: `normalise_prompt`) or the template,
    and `environment` (`environment_id`: feature, account and server, never the key)."""
    prompt = normalise_prompt(prompt) if task_type == "prompt" else None
    template_id = template_id if task_type == "template" else None
    parts = [CACHE_VERSION, environment, image_sha256, task_type, prompt or "", template_id or ""]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
