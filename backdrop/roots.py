"""Where a run may read and write: flow parameters are a trust boundary.

Whoever may start a run (the UI's Custom run, the Prefect API) chooses `csv` and `out`. A local CSV must lie in
one of the input roots, an output folder in one of the output roots, both after resolving symlinks and `..`
(settings `input_roots` / `output_roots`; default the current folder and its subfolders). A CSV URL must use an
allowed scheme (default https only) and name an allowed host (none by default), on every redirect too.
"""

from __future__ import annotations

from pathlib import Path

from backdrop.errors import ConfigError
from backdrop.redact import scrub
from backdrop.settings import BackdropSettings

__all__ = ["DEMO_DIR", "confine_output", "host_allowed", "input_roots", "output_roots", "shown", "within"]

#: Backdrop's bundled demo batch: part of the program, always readable
DEMO_DIR = Path(__file__).resolve().parent / "demo"


def shown(text: str, limit: int = 100) -> str:
    """A parameter as an error may quote it: secrets masked, query strings dropped, short, printable."""
    cleaned = "".join(c if c.isprintable() else "?" for c in scrub(text[: limit * 10]))
    return repr(cleaned[:limit] + ("…" if len(cleaned) > limit else ""))


def _resolved(entries: list[str] | None) -> list[Path]:
    if entries is None:
        return [Path.cwd().resolve()]
    roots = []
    for entry in entries:
        try:
            roots.append(Path(entry).expanduser().resolve())
        except (OSError, RuntimeError, ValueError):  # an unusable root opens nothing
            continue
    return roots


def input_roots(settings: BackdropSettings) -> list[Path]:
    """The folders a CSV may be read from: the setting's (default the current folder), and the demo folder."""
    return [*_resolved(settings.input_roots), DEMO_DIR]


def output_roots(settings: BackdropSettings) -> list[Path]:
    return _resolved(settings.output_roots)


def within(path: str | Path, roots: list[Path]) -> Path | None:
    """`path` resolved (symlinks followed, relative to the current folder) if it is one of `roots` or lies
    below one; None otherwise, and for a path that cannot be resolved (a NUL byte, a symlink loop)."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return resolved if any(resolved.is_relative_to(root) for root in roots) else None


def confine_output(out: str, settings: BackdropSettings | None = None) -> Path:
    """The output folder, resolved, if it lies in an output root; ConfigError (one short line) otherwise."""
    settings = settings or BackdropSettings()
    target = within(out, output_roots(settings)) if out.strip() else None
    if target is None:
        raise ConfigError(
            f"out {shown(out)} is refused: it is outside the folders runs may write "
            "(BACKDROP_OUTPUT_ROOTS; default the current folder)")
    return target


def host_allowed(host: str | None, allowed: list[str]) -> bool:
    """`host` (case and a trailing dot ignored) is listed, or lies under a listed `.domain` / `*.domain`."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    for entry in allowed:
        if entry == "*" or entry == host:
            return True
        suffix = entry.removeprefix("*")
        if suffix.startswith(".") and host.endswith(suffix):
            return True
    return False
