"""A batch whose CSV names internal addresses: each such row fails with its own code, nothing reaches them, the good
row is paid, and presigned query strings appear nowhere in what the run writes."""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


def test_internal_addresses_are_rows_refused_and_never_reached(pipeline_env: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    hits: Counter[str] = Counter()
    picture = draw_product(tmp_path / "served.jpg", (30, 120, 200)).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib's name
            hits[self.path] += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(picture)))
            self.end_headers()
            self.wfile.write(picture)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("BACKDROP_FETCH_ALLOW_NETWORKS")  # the fence as a deployment has it by default
    inside = f"http://127.0.0.1:{server.server_port}"
    folder = tmp_path / "in"
    folder.mkdir()
    draw_product(folder / "good.jpg", (200, 30, 30))
    rows = [
        {"id": "good", "image_url": "good.jpg", "prompt": "white marble"},
        {"id": "loopback", "image_url": f"{inside}/a.jpg?X-Amz-Signature=s3cr3tsig&X-Amz-Expires=60",
         "prompt": "white marble"},
        {"id": "metadata", "image_url": "http://169.254.169.254/latest/meta-data/", "prompt": "white marble"},
        {"id": "private", "image_url": "http://10.0.0.1/a.jpg", "prompt": "white marble"},
    ]
    out = tmp_path / "out"
    try:
        _, df = run_flow(csv=str(write_csv(folder, rows)), out=str(out))
    finally:
        server.shutdown()
        server.server_close()

    got = {r["row_id"]: (r["status"], r["error_code"] if isinstance(r["error_code"], str) else "")
           for r in df.to_dict("records")}
    assert got == {"good": ("succeeded", ""), "loopback": ("failed", "input_address_refused"),
                   "metadata": ("failed", "input_address_refused"), "private": ("failed", "input_address_refused")}
    assert hits == Counter()
    assert df.set_index("row_id").loc["loopback", "input"] == f"{inside}/a.jpg?…"
    written = [out / "report.csv", out / "summary.json", *out.glob("*.html"), *out.glob("*.md")]
    for path in written:
        assert "s3cr3tsig" not in path.read_text(errors="replace"), path
    assert json.loads((out / "summary.json").read_text())["csv"].endswith("batch.csv")
