"""Output files take the extension of their bytes, end to end: the sandbox returns PNG or WebP, and the files,
the report's `output_format`, duplicate rows' copies, the gallery and a re-run's reuse all follow the real name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


@pytest.mark.parametrize(("fmt", "ext", "pil"), [("png", ".png", "PNG"), ("webp", ".webp", "WEBP")])
def test_results_are_named_and_reported_by_their_format(pipeline_env: Any, tmp_path: Path, fmt: str, ext: str,
                                                        pil: str) -> None:
    pipeline_env.configure(result_format=fmt)
    draw_product(tmp_path / "mug.jpg", (200, 30, 30))
    draw_product(tmp_path / "cup.jpg", (30, 30, 200))
    rows = [{"id": "mug", "image_url": "mug.jpg", "prompt": "marble"},
            {"id": "mug-copy", "image_url": "mug.jpg", "prompt": "marble"},  # a duplicate: one task, two files
            {"id": "cup", "image_url": "cup.jpg", "prompt": "marble"}]
    out = tmp_path / "out"
    state, df = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(out))

    assert state.name == "Completed"
    assert list(df["status"]) == ["succeeded"] * 3
    assert list(df["output_format"]) == [fmt] * 3
    assert [Path(p).name for p in df["output_path"]] == [f"mug{ext}", f"mug-copy{ext}", f"cup{ext}"]
    for path in df["output_path"]:
        with Image.open(path) as im:
            assert im.format == pil
    assert not list(out.glob("*.jpg"))  # nothing under the planned placeholder name
    html = (out / "gallery.html").read_text()
    # each result's link is its real file (the inputs are mug.jpg and cup.jpg, which the gallery also shows)
    assert all(f'href="{name}{ext}"' in html for name in ("mug", "mug-copy", "cup"))
    assert 'href="mug-copy.jpg"' not in html

    # a re-run into another folder reuses the pictures (paid once) under their real names
    again = tmp_path / "again"
    state, df2 = run_flow(csv=str(write_csv(tmp_path, rows)), out=str(again))
    assert list(df2["reused"]) == [True] * 3 and df2["units_charged"].sum() == 0
    assert list(df2["output_format"]) == [fmt] * 3
    pictures = sorted(p.name for p in again.glob(f"*{ext}") if p.name != "contact-sheet.png")
    assert pictures == sorted([f"mug{ext}", f"mug-copy{ext}", f"cup{ext}"])
    assert not list(again.glob("*.jpg"))
