"""Scripted outcomes: `[[sandbox:...]]` markers in a prompt, a file name or a source URL."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MARKER = re.compile(r"\[\[sandbox:([a-z_]+)(?:=([^\]]*))?\]\]")


@dataclass(frozen=True)
class Script:
    """What the markers ask for; every field None/False when there is no marker."""

    error: str | None = None
    duration_s: float | None = None
    lost: bool = False
    http: int | None = None


def parse(*texts: str | None) -> Script:
    """Read every marker in `texts`; a later marker of the same kind wins."""
    error: str | None = None
    duration: float | None = None
    lost = False
    http: int | None = None
    for text in texts:
        for name, value in _MARKER.findall(text or ""):
            if name == "error" and value:
                error = value
            elif name == "duration":
                try:
                    duration = max(0.0, float(value))
                except ValueError:
                    continue
            elif name == "lost":
                lost = True
            elif name == "http" and value.isdigit():
                http = int(value)
    return Script(error=error, duration_s=duration, lost=lost, http=http)


def strip(text: str | None) -> str | None:
    """The text without its markers (what the picture is drawn from)."""
    if text is None:
        return None
    return _MARKER.sub("", text).strip()
