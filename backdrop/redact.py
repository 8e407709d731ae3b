"""Keep secrets out of what Backdrop says: error messages, log lines, anything a user's file or a server wrote.

`scrub` is the one helper: it drops the query strings of URLs (a signed URL's signature lives there) and masks
the secrets it is given. `redact` masks the secrets Backdrop knows of: the API key and the webhook secret from
the environment, and any value registered with `register_secret` (a key loaded from a Prefect Secret block).
`BackdropError` passes its message through `redact`, and `install_log_filter` puts `SecretFilter` on the
loggers whose records reach the Prefect server (a flow run's, a task run's) and on Backdrop's own.
`excerpt` is the few characters of a file's content an error may quote.
"""

from __future__ import annotations

import logging
import os
import re
import threading

__all__ = ["SecretFilter", "excerpt", "install_log_filter", "redact", "register_secret", "scrub"]

_URL_QUERY = re.compile(r"(?P<base>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#\"'<>]*)\?[^\s\"'<>]*")
#: environment variables whose values are secrets wherever they appear
SECRET_VARIABLES = ("BACKDROP_API_KEY", "BACKDROP_WEBHOOK_SECRET")
#: shorter values are not masked: masking "ab" would garble every message and protect nothing
_MIN_SECRET = 6
_registered: set[str] = set()
_lock = threading.Lock()
#: the loggers whose records Prefect sends to its server, and Backdrop's own
LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "backdrop", "backdrop.pipeline.lifecycle",
           "backdrop.pipeline.webhooks")


def scrub(text: str, *secrets: str | None) -> str:
    """Drop query strings from URLs in `text` and mask each of `secrets` wherever it appears."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_QUERY.sub(lambda m: m.group("base") + "?…", text)


def register_secret(value: str | None) -> None:
    """Mask `value` from now on in every Backdrop message and log line (e.g. a key read from a Secret block)."""
    if value and len(value) >= _MIN_SECRET:
        with _lock:
            _registered.add(value)


def known_secrets() -> list[str]:
    """The secrets to mask, longest first: the environment's and the registered ones."""
    found = {os.environ.get(name) or "" for name in SECRET_VARIABLES} | _registered
    return sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every known secret masked (query strings are kept: see `scrub` for those)."""
    for secret in known_secrets():
        text = text.replace(secret, "***")
    return text


def excerpt(text: str, limit: int = 20) -> str:
    """At most `limit` characters of a file's content, secrets masked before cutting, control characters
    shown as `?`: enough to recognise the file, never enough to carry what it holds."""
    cleaned = "".join(c if c.isprintable() else "?" for c in redact(text[: limit * 50]))
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")


class SecretFilter(logging.Filter):
    """Masks known secrets in a record's message and in its formatted traceback; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = known_secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format itself is left to the handler
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_filter = SecretFilter()


def install_log_filter() -> None:
    """Put the secret filter on the run loggers and Backdrop's loggers, and on their handlers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
        for handler in logger.handlers:
            if _filter not in handler.filters:
                handler.addFilter(_filter)
