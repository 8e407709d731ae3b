"""Plain batch bookkeeping for the flow: grouping rows into paid work items, and each row's output name.

No Prefect here: the flow composes these with the tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from backdrop.errors import InputRejected
from backdrop.files import safe_stem
from backdrop.identity import normalise_prompt
from backdrop.pipeline.inputs import InputRow, check_prompt
from backdrop.pipeline.preflight import PreparedInput

__all__ = [
    "RESERVED_STEMS",
    "WorkItem",
    "group_rows",
    "output_names",
]

#: stems of the files a run writes beside the pictures that a picture's name could meet: `contact-sheet.png` (a row
#: with id `contact-sheet` and a PNG result would overwrite it, or be overwritten), so no row gets them
RESERVED_STEMS = ("contact-sheet",)


@dataclass
class WorkItem:
    """One paid picture: a unique (image bytes, prompt/template) with every row that asked for it."""

    key: str
    prepared: PreparedInput
    source: str
    task_type: Literal["prompt", "template"]
    prompt: str | None
    template_id: str | None
    rows: list[InputRow] = field(default_factory=list)

    @property
    def primary(self) -> InputRow:
        return self.rows[0]


def group_rows(
    rows: list[InputRow],
    prepared: dict[str, PreparedInput | InputRejected],
    key_fn: Callable[[PreparedInput, InputRow, str], str],
) -> tuple[list[WorkItem], dict[int, InputRejected]]:
    """Group good rows into work items by content key; return rejected rows by line."""
    items: dict[str, WorkItem] = {}
    rejected: dict[int, InputRejected] = {}
    for row in rows:
        problem = check_prompt(row)
        found = prepared.get(row.image_url)
        if problem is None and isinstance(found, InputRejected):
            problem = found
        if problem is not None or found is None:
            rejected[row.line] = problem or InputRejected("input_missing", "image was not prepared")
            continue
        assert isinstance(found, PreparedInput)  # noqa: S101 - the other outcomes left above (narrows the type)
        task_type: Literal["prompt", "template"] = "template" if row.template_id else "prompt"
        key = key_fn(found, row, task_type)
        if key not in items:
            items[key] = WorkItem(
                key=key, prepared=found, source=row.image_url, task_type=task_type,
                prompt=normalise_prompt(row.prompt) if task_type == "prompt" else None,  # what is sent
                template_id=row.template_id if task_type == "template" else None,
            )
        items[key].rows.append(row)
    return list(items.values()), rejected


def output_names(rows: list[InputRow], out_dir: Path) -> dict[int, Path]:
    """A distinct output path per row, from its id; a repeated id gets its line number appended.

    The `.jpg` planned here is a placeholder: the file takes the extension of the bytes it gets (`.png`,
    `.webp`; `backdrop.client.download`), replacing only that suffix, so distinct stems stay distinct files.

    Unique by construction, compared case-folded (on macOS and Windows `Mug.jpg` and `mug.jpg` are one file): a
    name is given only once it is checked free, so a suffixed name cannot land on another row's own id either
    (ids `a-line3`, `a`, `a`: line 3 gets `a-line3-2`, not line 1's file)."""
    taken: set[str] = set(RESERVED_STEMS)
    names: dict[int, Path] = {}
    for row in rows:
        base = stem = safe_stem(row.row_id)
        if stem.casefold() in taken:
            base = stem = f"{stem}-line{row.line}"
        n = 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.casefold())
        path = out_dir / f"{stem}.jpg"
        if path.parent != out_dir:  # defence in depth; safe_stem already forbids separators
            raise ValueError(f"output name for {row.row_id!r} escapes the output folder")
        names[row.line] = path
    return names
