"""Settings of the sandbox: one typed object, read from `BACKDROP_SANDBOX_*` environment variables.

Durations are in *vendor* seconds; `time_scale` says how many vendor seconds pass per real second
(100 means everything runs 100x faster). Every field except the secrets and the key rules can be
overridden per API key at run time through `PATCH /_sandbox/config`.
"""

from __future__ import annotations

import base64
import secrets
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FaultRoute = Literal[
    "file", "create", "poll", "templates", "delete", "credit", "history", "feature_cost"
]
ALL_FAULT_ROUTES: list[FaultRoute] = [
    "file", "create", "poll", "templates", "delete", "credit", "history", "feature_cost"
]
#: global or secret fields: never shown by, nor changed through, the admin API
NOT_PER_KEY = frozenset({"api_keys", "key_pattern", "signing_secret", "webhook_secret", "admin_token",
                         "allow_private_fetch"})


def _random_signing_secret() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


def _random_webhook_secret() -> SecretStr:
    return SecretStr("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())


class SandboxSettings(BaseSettings):
    """How the sandbox behaves. Defaults are the real API's values where they are known."""

    model_config = SettingsConfigDict(
        env_prefix="BACKDROP_SANDBOX_", extra="forbid", validate_assignment=True
    )

    api_keys: list[str] = Field(default_factory=lambda: ["sandbox-key"])
    key_pattern: str = Field(
        r"^sandbox-[A-Za-z0-9_.-]{1,64}$",
        description="Any key matching this is accepted and gets its own isolated state.",
    )
    starting_balance: int = Field(10000, ge=0)
    units_per_task: int = Field(4, ge=0)

    time_scale: float = Field(1.0, gt=0, description="Vendor seconds per real second.")
    duration_mode: Literal["lognormal", "fixed", "immediate"] = "lognormal"
    duration_median_s: float = Field(10.0, ge=0)
    duration_sigma: float = Field(0.4, ge=0)
    polling_window_s: float = Field(600.0, gt=0, description="Unknown in the real API.")
    polling_interval_s: float | None = Field(
        None, gt=0, description="Send this as `data.polling_interval` in create and poll answers (the docs name the "
        "field, no observed answer carries it); None sends nothing.")
    task_timeout_s: float | None = Field(
        None, gt=0, description="A task that would run longer than this (vendor seconds) times out: from then on its "
        "polls answer the documented 500 TaskTimeout, and it is never charged. None: no task times out.")
    result_url_ttl_s: float = Field(7200.0, gt=0)
    upload_url_ttl_s: float = Field(3600.0, gt=0)
    task_ttl_s: float = Field(86400.0, gt=0)
    upload_headers_shape: Literal["object", "list"] = "object"
    file_batch: Literal["accept", "reversed", "refuse", "fewer_slots"] = Field(
        "accept", description="A File API request for more than one file: 'accept' answers one slot per file "
        "in the order asked (the published schema), 'reversed' the same slots in the reverse order (the order is "
        "not published), 'refuse' answers 400, 'fewer_slots' answers only the first file's slot.",
    )

    # Vendor variants: the contract is silent on these; see README "Vendor-variant profiles".
    profile: str = Field("default", description="Named set of variant settings (profiles.py).")
    history_order: Literal["newest_first", "oldest_first"] = "newest_first"
    result_size: Literal["input", "scaled"] = Field(
        "input", description="'scaled': results at 3/4 of the input's pixel size, aspect kept."
    )
    result_format: Literal["jpeg", "png", "webp"] = Field(
        "jpeg", description="The results' encoding (the vendor publishes none): JPEG, PNG (profile png) or WebP."
    )
    history_timestamp_offset_s: float = Field(
        0.0, description="Shift of the credit history's timestamps (local time written as UTC)."
    )
    feature_cost_slugs: Literal["bg-replace", "both", "bg-replace-v2", "none"] = Field(
        "bg-replace", description="Which background-change slugs the feature-cost list names (the live list of "
        "2026-10-03 names bg-replace only); the routes of both slugs answer whatever it says.",
    )
    poll_slug_check: Literal["strict", "lenient"] = Field(
        "strict", description="strict: a task polled under the other slug than its create's is 400 InvalidTaskId "
        "(as for any id the slug does not know); lenient: either slug polls it.",
    )

    rate_limit_enabled: bool = True
    rate_limit_requests: int = Field(250, ge=1)
    rate_limit_window_s: float = Field(300.0, gt=0)
    rate_limit_per_second: int = Field(5, ge=1)
    rate_limit_per_ip: bool = Field(
        True, description="Also count this key's requests in its client address's bucket."
    )

    signing_secret: SecretStr = Field(default_factory=_random_signing_secret)
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_secret: SecretStr = Field(default_factory=_random_webhook_secret)
    webhook_max_attempts: int = Field(5, ge=1)
    webhook_backoff_s: float = Field(5.0, ge=0, description="First retry delay, doubled each time.")
    webhook_timeout_s: float = Field(5.0, gt=0, description="Real seconds per delivery attempt.")

    seed: int = 0
    fault_routes: list[FaultRoute] = Field(default_factory=lambda: list(ALL_FAULT_ROUTES))
    fault_5xx_rate: float = Field(0.0, ge=0, le=1)
    fault_drop_rate: float = Field(0.0, ge=0, le=1)
    fault_slow_rate: float = Field(0.0, ge=0, le=1)
    fault_slow_s: float = Field(30.0, ge=0)
    fault_429_burst_rate: float = Field(0.0, ge=0, le=1)
    fault_429_burst_len: int = Field(3, ge=1)
    fault_engine_error_rate: float = Field(0.0, ge=0, le=1)
    fault_lost_create_rate: float = Field(0.0, ge=0, le=1)

    src_url_timeout_s: float = Field(5.0, gt=0, description="Real seconds to fetch a src_file_url.")
    allow_private_fetch: bool = Field(
        False, description="Let the engine fetch src_file_urls and deliver webhooks to loopback, private, "
        "link-local or reserved addresses (tests, local benchmarks). Server-wide, never per key.",
    )
    admin_token: SecretStr | None = Field(
        None, description="When set, every /_sandbox/ route needs it in the X-Sandbox-Admin-Token header. A sandbox "
        "bound to a non-loopback address always has one (random, printed once at start, unless set).",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: object) -> object:
        """Lay the named profile's values under the fields given explicitly (env or arguments)."""
        if isinstance(data, dict) and "profile" in data:
            from .profiles import profile_values

            return {**profile_values(data["profile"]), **data}
        return data

    def real(self, vendor_seconds: float) -> float:
        """Real seconds for a span of vendor seconds."""
        return vendor_seconds / self.time_scale

    def public(self) -> dict[str, object]:
        """The per-key view: every field except the secrets and the global key rules."""
        return self.model_dump(mode="json", exclude=set(NOT_PER_KEY))
