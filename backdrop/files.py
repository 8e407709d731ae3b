"""Output files: names from the row id (sanitised so that no id can escape the output folder), and the
atomic-replace primitive the report, the cost report, the pipeline and the gallery write through (a
temporary file beside the target, then `os.replace`: a reader never sees half a file)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["safe_stem", "copy_atomic", "atomic_write", "atomic_path"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(row_id: str, *, max_len: int = 80) -> str:
    """A file-name stem for `row_id`: only [A-Za-z0-9._-], no leading dots, bounded length.

    Ids that had to be changed get a short hash suffix so that two different ids never collide.
    """
    cleaned = _UNSAFE.sub("_", row_id).lstrip("._-")[:max_len]
    if cleaned == row_id and cleaned:
        return cleaned
    digest = hashlib.sha256(row_id.encode()).hexdigest()[:8]
    return f"{cleaned or 'row'}-{digest}"


def copy_atomic(src: Path, dest: Path) -> None:
    """Copy `src` to `dest` through a temporary file and an atomic rename."""
    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))


def atomic_write(path: Path, write: Callable[[Path], object], *, mode: int | None = None) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path` atomically.

    `mode` (e.g. 0o644) is applied before the rename; without it the file keeps mkstemp's 0600.
    """
    with atomic_path(path, mode=mode) as tmp:
        write(tmp)


@contextmanager
def atomic_path(path: Path, *, mode: int | None = None) -> Iterator[Path]:
    """A temporary file beside `path` to write; renamed over `path` when the block ends cleanly.

    If the block raises, the temporary file is removed and `path` is left as it was. Nest two blocks
    to replace two files only when both were written (the inner one is renamed first).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            tmp.chmod(mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
