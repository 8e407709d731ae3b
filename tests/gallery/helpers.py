"""A small batch on disk: pictures next to a CSV, staged copies, outputs, and its report.

Rows (expected <img> count in brackets):
  mug      succeeded  staged input (GREEN, while mug.jpg next to the CSV is RED) + output   [2]
  hostile  succeeded  unstaged local PNG with alpha + output; hostile id and prompt       [2]
  broken   failed     preflight, input file missing                                        [0]
  engine   failed     engine error after upload (staged input, no output)                  [1]
  remote   skipped    an https URL input (never fetched), budget exhausted                 [0]
  late     pending    template instead of prompt, staged input, poll deadline              [1]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from backdrop.report.table import RowOutcome, build_report, summarize

GREEN, RED, BLUE, ORANGE = (30, 160, 60), (200, 30, 30), (40, 60, 200), (240, 140, 20)
HOSTILE_PROMPT = (
    '<script>document.body.dataset.pwned="1"</script>'
    '<img src=x onerror="document.body.dataset.pwned=2">'
)
HOSTILE_ID = 'sku-<b>7</b>&"x"'
EXPECTED_IMAGES = 6


@dataclass
class Batch:
    """A report, its summary and the folders it lives in."""

    csv_dir: Path
    out_dir: Path
    df: pd.DataFrame
    summary: dict[str, Any]
    staged_sha: str


def draw(path: Path, size: tuple[int, int], colour: tuple[int, ...], mode: str = "RGB") -> bytes:
    """A flat picture with a white square in the middle (so thumbnails are not all one colour)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new(mode, size, colour)
    w, h = size
    white = (255, 255, 255) + ((255,) if mode == "RGBA" else ())
    im.paste(white, (w // 3, h // 3, w // 3 + 8, h // 3 + 8))
    im.save(path)
    return path.read_bytes()


def make_batch(root: Path, extra_rows: int = 0) -> Batch:
    """Write the pictures and build the report; `extra_rows` more succeeded rows reuse mug's."""
    csv_dir, out_dir = root / "in", root / "out"
    draw(csv_dir / "mug.jpg", (800, 600), RED)
    draw(csv_dir / "hostile.png", (300, 500), BLUE + (255,), "RGBA")
    staged = draw(root / "staged.jpg", (800, 600), GREEN)
    sha = hashlib.sha256(staged).hexdigest()
    (out_dir / ".backdrop" / "inputs").mkdir(parents=True)
    (root / "staged.jpg").rename(out_dir / ".backdrop" / "inputs" / f"{sha}.jpg")
    out_sha = hashlib.sha256(draw(out_dir / "mug.jpg", (1000, 750), ORANGE)).hexdigest()
    draw(out_dir / "hostile.jpg", (400, 600), ORANGE)

    def ok(line: int, row_id: str, output: str, **kw: Any) -> RowOutcome:
        return RowOutcome(line=line, row_id=row_id, status="succeeded", units_charged=4, cost=0.22,
                          task_id=f"task-{row_id}", output_path=str(out_dir / output), **kw)

    outcomes = [
        ok(1, "mug", "mug.jpg", input="mug.jpg", prompt="white marble", template_id=None,
           input_sha256=sha, output_sha256=out_sha, extra={"sku": "BD-1001"}),
        ok(2, HOSTILE_ID, "hostile.jpg", input="hostile.png", prompt=HOSTILE_PROMPT,
           template_id=None),
        RowOutcome(line=3, row_id="broken", input="missing.jpg", prompt="beach", template_id=None,
                   status="failed", failed_stage="preflight", error_code="input_not_found",
                   error_message="no such file next to the CSV: missing.jpg"),
        RowOutcome(line=4, row_id="engine", input="mug.jpg", prompt="forest", template_id=None,
                   status="failed", failed_stage="task", error_code="error_inference_failed",
                   error_message="the engine gave up <on this one>", input_sha256=sha),
        RowOutcome(line=5, row_id="remote", input="https://cdn.example.com/p.jpg?a=1&b=2",
                   prompt="sky", template_id=None, status="skipped", error_code="budget_exhausted",
                   error_message="max_units=8 reached; not attempted"),
        RowOutcome(line=6, row_id="late", input="mug.jpg", prompt=None, template_id="tpl_studio_01",
                   status="pending_reconcile", failed_stage="poll",
                   error_code="poll_deadline_exceeded", error_message="no answer in time",
                   input_sha256=sha),
    ]
    outcomes += [ok(7 + i, f"extra-{i:03d}", "mug.jpg", input="mug.jpg", prompt="again",
                    template_id=None, input_sha256=sha, output_sha256=out_sha)
                 for i in range(extra_rows)]
    df = build_report(outcomes)
    summary = summarize(df, unit_price=0.055, currency="USD", units_per_task=4)
    summary.update(csv=str(csv_dir / "products.csv"), feature="bg-replace-v2", run_id="run-1",
                   dry_run=False)
    return Batch(csv_dir, out_dir, df, summary, sha)


# A batch with pending rows (see make_pending_batch); its expected <img> count is in brackets there.
PURPLE = (120, 40, 160)
PENDING_KEY = "0123456789ab"
CANDIDATE_KEPT, CANDIDATE_GONE = "task-cand-A1", "task-cand-B2"
HOSTILE_TASK = """<script>document.body.dataset.pwned="3"</script><img/src=x/onerror=alert('x')>"""
PENDING_IMAGES = 4


def pending_note(key: str, *task_ids: str) -> str:
    """A pending row's note, as backdrop.pipeline.lifecycle writes it."""
    return (f"candidate charges: {' '.join(task_ids)}; settle it with `backdrop reconcile {key} --task "
            "<task id>` (or --not-created, or --recreate)")


def make_pending_batch(root: Path) -> Batch:
    """Pending rows, each with its staged input (GREEN):

      waiting   two candidates: CANDIDATE_KEPT's result kept (PURPLE), CANDIDATE_GONE's not   [2]
      hostile   one candidate whose task id is markup and quotes; its picture not kept       [1]
      late      no candidate charges seen yet: an ordinary pair                               [1]
    """
    csv_dir, out_dir = root / "in", root / "out"
    csv_dir.mkdir(parents=True)
    inputs = out_dir / ".backdrop" / "inputs"
    staged = draw(inputs / "staged.jpg", (800, 600), GREEN)
    sha = hashlib.sha256(staged).hexdigest()
    (inputs / "staged.jpg").rename(inputs / f"{sha}.jpg")
    draw(out_dir / ".backdrop" / "candidates" / f"{CANDIDATE_KEPT}.jpg", (1200, 900), PURPLE)

    def pending(line: int, row_id: str, note: str | None) -> RowOutcome:
        return RowOutcome(line=line, row_id=row_id, input="mug.jpg", prompt="white marble",
                          template_id=None, status="pending_reconcile", failed_stage="create",
                          error_code="ambiguous_create", error_message="no answer to the create",
                          input_sha256=sha, note=note)

    df = build_report([
        pending(1, "waiting", pending_note(PENDING_KEY, CANDIDATE_KEPT, CANDIDATE_GONE)),
        pending(2, "hostile", pending_note("ba9876543210", HOSTILE_TASK)),
        pending(3, "late", None),
    ])
    summary = summarize(df, unit_price=0.055, currency="USD", units_per_task=4)
    summary.update(csv=str(csv_dir / "products.csv"), feature="bg-replace-v2", run_id="run-2",
                   dry_run=False)
    return Batch(csv_dir, out_dir, df, summary, sha)
