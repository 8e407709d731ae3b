"""Prefect's temporary server on a busy machine: time enough to start, and one clear line when it still fails.

Without PREFECT_API_URL, Prefect starts a temporary ("ephemeral") server on first use and waits
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS for it (Prefect's default: 20 s). A fresh PREFECT_HOME
builds its database first, which on a loaded laptop takes longer, and the first `backdrop demo` failed
with a traceback. Backdrop's entry points give it 180 s unless the user chose a value, wherever
Prefect reads one (environment, profile, prefect.toml, .env).
"""

from __future__ import annotations

import os

STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT_SECONDS = 180
_TIMED_OUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def generous_startup_timeout() -> int:
    """Give the temporary server 180 s to start unless the user set a budget; return the budget in force.

    Prefect reads its settings once, when `prefect.context` is first imported, and the server's start
    reads this one from that snapshot; so when the user has not set it, set it in the environment and
    rebuild the snapshot (the server process inherits the environment too).
    """
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    chosen = get_current_settings().server.ephemeral.model_fields_set
    if STARTUP_TIMEOUT not in os.environ and "startup_timeout_seconds" not in chosen:
        os.environ[STARTUP_TIMEOUT] = str(DEFAULT_STARTUP_TIMEOUT_SECONDS)
        refresh_global_settings_context()
    return get_current_settings().server.ephemeral.startup_timeout_seconds


def failure_line(exc: BaseException) -> str | None:
    """One line that says what happened and what to do, if `exc` is Prefect's server failing to start."""
    message = str(exc)
    if not (isinstance(exc, RuntimeError) and message.startswith(_TIMED_OUT)):
        return None
    from prefect.settings import get_current_settings

    budget = get_current_settings().server.ephemeral.startup_timeout_seconds
    server = "set PREFECT_API_URL to a running server (`prefect server start`)"
    if "exited with code" in message:
        return f"Prefect's temporary server exited while starting: {server}; --verbose shows its output"
    return (f"Prefect's temporary server did not start within {budget} s (a first start builds its "
            f"database): raise {STARTUP_TIMEOUT}, or {server}; --verbose shows the details")
