"""Backdrop's settings: one typed object, read from `BACKDROP_*` environment variables.

The API key is a `SecretStr`: it prints as `**********` and only `api_key_value()` reveals it,
at the edge where the HTTP header is built.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backdrop.fences import NetworkList

DEFAULT_API_URL = "https://yce-api-01.makeupar.com"
#: the vendor's documented spellings of one API server (contract: "perfectcorp.com answers identically")
VENDOR_HOSTS = frozenset({"yce-api-01.makeupar.com", "yce-api-01.perfectcorp.com"})
VENDOR_SERVICE = "yce-api-01.makeupar.com"
#: share of `poll_max_gap_seconds` a planned wait between two polls of a running task may use (the poll planner), and
#: how often the limiter keeps room to poll each running task; the rest is for the limiter's queue and the network
POLL_WAIT_SHARE = 0.75

#: a slug the routes carry; `FeatureSetting` adds `auto` (resolved per run from the account's feature-cost list)
FeatureSlug = Literal["bg-replace-v2", "bg-replace"]
FeatureSetting = Literal["auto", "bg-replace-v2", "bg-replace"]
#: how a row's picture reaches the vendor: its bytes uploaded, its public URL passed on, or whichever fits
InputMode = Literal["upload", "url", "auto"]
FileRoute = Literal["auto", "feature", "universal"]


class BackdropSettings(BaseSettings):
    """Everything the client and the pipeline need to reach the API and pace themselves."""

    model_config = SettingsConfigDict(env_prefix="BACKDROP_", extra="ignore", frozen=True)

    api_url: str = Field(DEFAULT_API_URL, description="Base URL of the API (or of the sandbox).")
    api_key: SecretStr | None = Field(None, description="API key; never logged or printed.")
    api_key_block: str | None = Field(
        None, description="Name of a Prefect Secret block holding the key (used when api_key is unset)."
    )
    account: str = Field(
        "default", min_length=1,
        description="Name of the vendor account the key belongs to. What was paid is remembered per account and "
        "server, not per key: rotating the key keeps it. When one ledger serves several vendor accounts, give "
        "each account its own name.",
    )
    feature: FeatureSetting = Field(
        "auto",
        description="Feature slug in the task routes. 'auto': each run reads the account's feature-cost list "
        "(free) and takes the slug it lists (bg-replace when both are). 'bg-replace' is the newer published "
        "name (templates, universal file route), 'bg-replace-v2' the older edition's.",
    )
    file_route: FileRoute = Field(
        "auto",
        description="Upload-slot route: 'feature' = POST /s2s/v2.0/file/{feature}, 'universal' = "
        "POST /s2s/v2.0/file; 'auto' picks 'feature' for bg-replace-v2 and 'universal' for bg-replace (the "
        "resolved slug, with feature=auto).",
    )

    upload_batch: int = Field(
        10, ge=1, le=100,
        description="Upload slots asked for in one File API call (files[]), gathered across concurrent rows; "
        "1 = one file per request. A vendor that refuses a batch turns it off for the rest of the run.",
    )
    upload_batch_linger_seconds: float = Field(
        0.3, ge=0, description="How long a slot request waits for others to share its call, at most.",
    )

    # Pacing: the vendor's documented limits per key (contract section 9).
    rate_limit_requests: int = Field(250, ge=1, description="Requests allowed per rolling window.")
    rate_limit_window_seconds: float = Field(300.0, gt=0, description="Length of the rolling window.")
    rate_limit_per_second: float = Field(5.0, gt=0, description="Requests allowed per second.")
    rate_limit_short_window_seconds: float = Field(
        1.0, gt=0, description="The window the per-second limit is counted over (1 s at the vendor; "
        "shorter against a sandbox that runs faster than real time)."
    )
    rate_limit_burst: int | None = Field(
        None, ge=1, description="At most this many requests at once, then the window's average rate "
        "(250 per 300 s: one per 1.2 s); unset = the whole window may go at once, fastest for small batches. "
        "A small burst spreads a big batch evenly, so that no task waits for the first window to slide.",
    )

    # Retries of requests that are safe to repeat (and of 429s, which the server refused).
    max_retries: int = Field(4, ge=0, le=20)
    backoff_base_seconds: float = Field(1.0, ge=0)
    backoff_max_seconds: float = Field(30.0, ge=0)

    connect_timeout_seconds: float = Field(10.0, gt=0)
    read_timeout_seconds: float = Field(30.0, gt=0)

    # Fences of Backdrop's own fetches (input pictures, result downloads): see backdrop/fences.py.
    fetch_allow_networks: NetworkList = Field(
        "",
        description="Networks (CIDRs, comma-separated, e.g. 10.20.0.0/16,fd00::/8) input pictures and result "
        "downloads may be fetched from although they are not public: an internal picture catalogue. Loopback, "
        "private, link-local, multicast and reserved addresses are refused otherwise.",
    )
    fetch_deadline_seconds: float = Field(
        60.0, gt=0, description="An input picture's whole fetch (redirects and body) must end within this."
    )
    fetch_max_bytes: int = Field(64 * 1024 * 1024, gt=0, description="An input picture larger than this is refused.")

    # Polling a running task.
    poll_first_seconds: float = Field(
        8.0, ge=0, description="Wait before the first poll (a task takes ~10 s)."
    )
    poll_interval_seconds: float = Field(2.0, gt=0, description="Interval after the first poll.")
    poll_max_interval_seconds: float = Field(
        15.0, gt=0, description="Back-off cap between polls of a running task. The poll gap bounds every wait too "
        "(three quarters of poll_max_gap_seconds: 15 s by default), so a larger cap has no effect.",
    )
    poll_max_gap_seconds: float = Field(
        20.0, gt=0, description="The longest a running task is left without a poll (webhooks or not). The vendor times "
        "out a task not polled within its unpublished polling window (InvalidTaskId, units maybe charged); its sample "
        "polls every 2 s, its official client every 5 s: 20 s is four times the slowest published client. A "
        "`polling_interval` the vendor sends shortens it. A quarter of it is kept for the rate limiter and the "
        "network.",
    )
    poll_deadline_seconds: float = Field(
        900.0, gt=0, description="After this a still-running task is reported pending_reconcile."
    )

    poll_strategy: Literal["adaptive", "fixed"] = Field(
        "adaptive",
        description="adaptive: time each first poll from the task durations seen so far in the run (seeded "
        "by poll_first_seconds), then back off; fixed: poll every poll_interval_seconds from the start, "
        "as the vendor's sample code does.",
    )
    poll_quantile: float = Field(
        0.9, gt=0, lt=1, description="adaptive: first poll at this quantile of the observed task durations."
    )
    webhook_listen: str | None = Field(
        None,
        description="host:port where Backdrop receives the vendor's webhooks during a run (e.g. 0.0.0.0:8900); "
        "unset = no webhooks, polling only.",
    )
    webhook_secret: SecretStr | None = Field(None, description="The endpoint's whsec_... signing secret.")
    webhook_safety_poll_seconds: float = Field(
        60.0, gt=0, description="With webhooks: poll anyway when no delivery came this long after create."
    )
    limiter_url: str | None = Field(
        None,
        description="SQLAlchemy URL of a database that paces every process and host sharing the key "
        "(PostgreSQL across hosts); unset = pacing within this process only.",
    )
    egress_id: str | None = Field(
        None, min_length=1, max_length=200,
        description="Name of the address requests leave through: the vendor also limits per client address, "
        "so keys that leave through one address must share it (with a shared limiter_url across processes). "
        "Unset = this host's name.",
    )

    reconcile_after_seconds: float = Field(
        900.0, ge=0,
        description="How long after a create was sent the vendor may still charge its task. A lost create is "
        "settled from the credit history only once this has passed; no charge in that window means no task.",
    )
    settle_wait_seconds: float = Field(
        1200.0, ge=0,
        description="At the end of a run that lost creates, wait at most this long for the credit history to "
        "settle them (0: leave them pending for the next run or `backdrop reconcile`).",
    )
    history_max_pages: int = Field(
        200, ge=1, description="Credit-history pages read at most when settling lost creates (30 entries each).",
    )
    reconcile_with_vendor: bool = Field(
        True, description="After each run, compare the units the vendor charged with the report's."
    )

    max_download_bytes: int = Field(50 * 1024 * 1024, gt=0)

    # Flow parameters are a trust boundary: whoever may start a run chooses `csv` and `out`.
    input_roots: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Folders a run may read its CSV from (and their subfolders, symlinks resolved): a JSON list or "
        "paths separated by ':' (os.pathsep). Unset = the current folder; empty = none. Backdrop's bundled demo "
        "folder is always readable.",
    )
    output_roots: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Folders a run may write its output folder in (or be): as input_roots. Unset = the current folder.",
    )
    csv_url_schemes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["https"],
        description="URL schemes a CSV may be read from (comma-separated or JSON): https by default; add http, s3, "
        "gs... (fsspec protocols) or file (file:// URLs, still held to input_roots) to open them.",
    )
    csv_url_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts a CSV URL may name (comma-separated or JSON): 'example.com' is that host, "
        "'.example.com' or '*.example.com' its subdomains, '*' any host; none by default, so a CSV URL is refused "
        "until its host is listed. For s3:// and the like the host is the bucket.",
    )
    csv_max_bytes: int = Field(100 * 1024 * 1024, gt=0, description="A CSV larger than this is refused.")

    units_per_task: int = Field(4, ge=0, description="Units the vendor charges per success.")
    unit_price: float = Field(0.055, ge=0, description="Price of one unit, for cost figures.")
    currency: str = Field("USD")

    ledger_url: str | None = Field(
        None,
        description="SQLAlchemy URL of Backdrop's ledger; default SQLite in BACKDROP_HOME (~/.backdrop).",
    )
    home: str = Field("~/.backdrop", description="Backdrop's own folder: the default ledger's SQLite file is here.")

    # Cost reporting (flows/cost_report.py, `backdrop cost`).
    budget_units: int | None = Field(
        None, ge=0, description="Units allowed per budget period; unset means no budget."
    )
    budget_period: Literal["month", "week", "day"] = Field(
        "month", description="Budget period, in UTC: calendar month, ISO week (from Monday), or day."
    )
    budget_warn_at: float = Field(
        0.8, gt=0,
        description="Share of the budget, used so far or projected at the period's end, that raises the alarm.",
    )

    @field_validator("input_roots", "output_roots", mode="before")
    @classmethod
    def _path_list(cls, value: object) -> object:
        """A JSON list, or paths separated by os.pathsep (as in PATH); an empty string is an empty list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [p for p in text.split(os.pathsep) if p.strip()]
        return value

    @field_validator("csv_url_schemes", "csv_url_hosts", mode="before")
    @classmethod
    def _word_list(cls, value: object) -> object:
        """A JSON list, or words separated by commas or spaces; lower-cased."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [w for w in re.split(r"[,\s]+", text) if w]
        if isinstance(value, list):
            return [str(w).strip().lower().rstrip(".") if str(w).strip() != "*" else "*" for w in value]
        return value

    def api_key_value(self) -> str | None:
        """The key itself, for the Authorization header only."""
        return self.api_key.get_secret_value() if self.api_key else None

    def effective_ledger_url(self) -> str:
        """`ledger_url`, else SQLite in `home` (the folder is created if missing)."""
        if self.ledger_url:
            return self.ledger_url
        home = Path(self.home).expanduser()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home / 'ledger.db'}"

    @property
    def upload_route(self) -> Literal["feature", "universal"]:
        if self.file_route != "auto":
            return self.file_route
        return "feature" if self.feature == "bg-replace-v2" else "universal"


def canonical_service(api_url: str) -> str:
    """One name per API server, whatever the URL's spelling: the vendor's host aliases are one name, a sandbox on
    this machine is `loopback:<port>` (localhost, 127.0.0.1, ::1), anything else its lower-cased `host:port`.
    Scheme, path, user info and a trailing dot or slash do not count; a missing port is the scheme's."""
    parts = urlsplit(api_url.strip() if "://" in api_url else f"https://{api_url.strip()}")
    host = (parts.hostname or "").rstrip(".")
    if host in VENDOR_HOSTS:
        return VENDOR_SERVICE
    try:
        port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:  # a port that is not a number: keep the spelling, it reaches nothing anyway
        return f"{host}:{parts.netloc.rpartition(':')[2].lower()}"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        loopback = host == "localhost" or host.endswith(".localhost")
    else:
        mapped = getattr(ip, "ipv4_mapped", None)
        loopback = ip.is_loopback or bool(mapped and mapped.is_loopback)
        host = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    return f"loopback:{port}" if loopback else f"{host}:{port}"
