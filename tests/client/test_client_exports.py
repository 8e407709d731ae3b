"""The public surface of `backdrop.client`, and its layering (no Prefect, no sandbox, no database)."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import backdrop.client as client_pkg
from backdrop.client import BackdropClient

CLIENT_DIR = Path(client_pkg.__file__).parent

PUBLIC = {
    "BackdropClient", "ClientStats", "CreatedTask", "CreditBalance", "CreditHistoryEntry",
    "CreditLot", "DownloadedFile", "FeatureCost", "TaskStatus", "Template", "UploadSlot",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(client_pkg.__all__) == PUBLIC
    exposed = {
        name for name, value in vars(client_pkg).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert exposed == PUBLIC


def test_client_modules_import_neither_prefect_nor_the_sandbox() -> None:
    for module in CLIENT_DIR.glob("*.py"):
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                bad = name.startswith(("prefect", "backdrop.sandbox"))
                # the caller chooses the limiter (`backdrop.pacing.limiter_for`): no persistence in the client
                bad = bad or name.split(".")[0] == "sqlalchemy" or name == "backdrop.pacing.database"
                assert not bad, f"{module.name} imports {name}"


def test_importing_the_client_loads_no_database_layer() -> None:
    code = "import sys, backdrop.client; assert 'sqlalchemy' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=CLIENT_DIR.parents[1])


def test_method_signatures_match_the_contract_with_the_pipeline() -> None:
    expected = {
        "request_upload": ["self", "file_name", "content_type", "file_size"],
        "put_file": ["self", "slot", "path"],
        "upload_file": ["self", "path", "content_type", "file_name"],
        "create_task": [
            "self", "src_file_id", "src_file_url", "prompt", "template_id", "task_type", "before_send"
        ],
        "get_task": ["self", "task_id", "feature", "due_in"],
        "list_templates": ["self", "page_size"],
        "delete_task": ["self", "task_id"],
        "credit_balance": ["self"],
        "credit_history": ["self", "page_size", "max_pages", "since"],
        "credit_history_page": ["self", "token", "page_size"],
        "feature_costs": ["self", "page_size"],
        "download": ["self", "url", "dest", "max_bytes", "name_by_format"],
    }
    for name, params in expected.items():
        method = getattr(BackdropClient, name)
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters) == params, name
    init = list(inspect.signature(BackdropClient.__init__).parameters)
    assert init[:6] == ["self", "settings", "limiter", "transport", "storage_transport", "sleep"]
