"""Vendor-variant profiles: named sets of the settings where the vendor's contract is silent.

Backdrop's lost-create reconciliation reads the credit history and compares result pictures with
their inputs, so it silently depends on things the vendor never published: the history's order,
the zone of its timestamps, the result's pixel size and format, and how long an unpolled task
lives. Each profile picks one plausible answer (`hostile` picks all of them), so a test can run
the pipeline against each:

    sandbox.configure(**patch_body("hostile"))            # per key, via PATCH /_sandbox/config
    SandboxSettings(profile="hostile")                    # server-wide, in Python
    BACKDROP_SANDBOX_PROFILE=hostile python -m backdrop.sandbox   # or --profile hostile

Fields given explicitly (arguments, `BACKDROP_SANDBOX_*` variables) win over the profile's.
"""

from __future__ import annotations

from .settings import SandboxSettings

#: the vendor-variant settings (their defaults are today's behaviour, the "default" profile)
VARIANT_FIELDS = (
    "history_order", "result_size", "result_format", "history_timestamp_offset_s", "polling_window_s"
)

#: an unpolled task expires after this many vendor seconds under "short-window"
SHORT_WINDOW_S = 20.0
#: Asia/Tokyo (UTC+9) written as if it were UTC
TOKYO_OFFSET_S = 9 * 3600.0

_VARIANTS: dict[str, dict[str, object]] = {
    "oldest-first": {"history_order": "oldest_first"},
    "resized": {"result_size": "scaled"},
    "png": {"result_format": "png"},
    "short-window": {"polling_window_s": SHORT_WINDOW_S},
    "shifted-clock": {"history_timestamp_offset_s": TOKYO_OFFSET_S},
}

PROFILES: dict[str, dict[str, object]] = {
    "default": {},
    **_VARIANTS,
    "hostile": {k: v for variant in _VARIANTS.values() for k, v in variant.items()},
}


def check_name(name: object) -> str:
    """`name` if it is a profile's name; ValueError listing the names otherwise."""
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"unknown sandbox profile {name!r}; known profiles: {', '.join(PROFILES)}")
    return name


def profile_values(name: object) -> dict[str, object]:
    """The settings a profile changes (nothing for "default")."""
    return dict(PROFILES[check_name(name)])


def patch_body(name: str) -> dict[str, object]:
    """The `PATCH /_sandbox/config` body that puts one key under profile `name`.

    Every variant setting is named, at the profile's value or its default, so patching another
    profile (or "default") later undoes the previous one.
    """
    defaults = {f: SandboxSettings.model_fields[f].default for f in VARIANT_FIELDS}
    return {"profile": check_name(name), **defaults, **PROFILES[name]}


def with_profile(name: str | None, settings: SandboxSettings | None = None) -> SandboxSettings:
    """Settings under profile `name` (None: unchanged).

    Without `settings`, the environment's `BACKDROP_SANDBOX_*` fields still win over the
    profile's; with `settings`, the profile's variant fields replace theirs.
    """
    if name is None:
        return settings if settings is not None else SandboxSettings()
    if settings is None:
        return SandboxSettings(profile=check_name(name))
    return SandboxSettings.model_validate({**settings.model_dump(), **patch_body(name)})
