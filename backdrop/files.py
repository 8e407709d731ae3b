"""Output file names: from the row id, sanitised so that no id can escape the output folder."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["safe_stem", "copy_atomic", "atomic_write"]

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
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, write: Any) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
