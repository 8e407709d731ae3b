"""One bad cell costs one row: the cells that used to fail the whole flow (review finding 6) are rows with a code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


def test_hostile_cells_are_rows_and_the_good_row_succeeds(pipeline_env: Any, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    draw_product(folder / "good.jpg", (200, 30, 30))
    os.symlink("loop.jpg", folder / "loop.jpg")
    hostile = ["a" * 300 + ".jpg", "loop.jpg", "http://[::1/x.jpg", "x\x00.jpg", "../" * 200 + "etc/passwd",
               "\u202e\x01\x7f.jpg"]
    rows = [{"id": "good", "image_url": "good.jpg", "prompt": "white marble"},
            *({"id": f"bad-{i}", "image_url": cell, "prompt": "white marble"} for i, cell in enumerate(hostile))]

    state, df = run_flow(csv=str(write_csv(folder, rows)), out=str(tmp_path / "out"))

    assert state.name == "Completed with failures"
    assert list(df["line"]) == list(range(1, len(rows) + 1))  # every row, once
    by_id = df.set_index("row_id")
    assert by_id.loc["good", "status"] == "succeeded" and Path(by_id.loc["good", "output_path"]).is_file()
    bad = df[df["row_id"] != "good"]
    assert set(bad["status"]) == {"failed"} and set(bad["failed_stage"]) == {"preflight"}
    assert set(bad["units_charged"]) == {0}
    assert bad["error_code"].notna().all()
    assert set(bad["error_code"].iloc[:4]) == {"input_unreadable"}
    for message in bad["error_message"]:
        assert "a" * 20 not in message and "../../../" not in message
