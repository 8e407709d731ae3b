"""`backdrop run` without any key says so in one line, before Prefect starts (it used to start Prefect's temporary
server, about 20 s on a laptop, and print Prefect's traceback before the same line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BACKDROP = str(Path(sys.executable).with_name("backdrop"))


def test_run_without_a_key_fails_at_once_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "photos.csv").write_text("id,image_url,prompt\nmug,mug.jpg,beach\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKDROP_", "PREFECT_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")  # were Prefect to start, it would leave its database here
    done = subprocess.run([BACKDROP, "run", "photos.csv"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert out.strip().splitlines() == [
        "error: no API key: set BACKDROP_API_KEY, or BACKDROP_API_KEY_BLOCK to a Prefect Secret block name, or try "
        "it on the sandbox with --sandbox"], out
    assert not (tmp_path / "prefect" / "prefect.db").exists()
