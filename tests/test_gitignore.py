"""Every output folder Backdrop writes by default, and the inbox, are ignored by git: data never lands in a commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from backdrop.params import BatchParameters, CostParameters

ROOT = Path(__file__).resolve().parents[1]


def _defaults() -> set[str]:
    folders = {BatchParameters.model_fields["out"].default, CostParameters.model_fields["out"].default,
               "demo-output"}  # `backdrop demo --out`
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        params = deployment.get("parameters", {})
        if "out" in params:
            folders.add(params["out"])
        if str(params.get("csv", "")).startswith("inbox/"):
            folders.add("inbox")
    return folders


def test_default_outputs_and_the_inbox_are_ignored() -> None:
    folders = sorted(_defaults())
    assert {"backdrop-output", "cost-output", "inbox-output", "inbox"} <= set(folders)
    probes = [f"{folder}/report.csv" for folder in folders]
    done = subprocess.run(["git", "check-ignore", "--no-index", *probes], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    ignored = set(done.stdout.split())
    assert ignored == set(probes), f"not ignored: {sorted(set(probes) - ignored)}"
