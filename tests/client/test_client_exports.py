"""The public surface of `backdrop.client`, and its layering (no Prefect, no sandbox)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import backdrop.client as client_pkg
from backdrop.client import BackdropClient

CLIENT_DIR = Path(client_pkg.__file__).parent

PUBLIC = {
    "BackdropClient", "ClientStats", "CreatedTask", "CreditBalance", "CreditHistoryEntry",
    "CreditLot", "DownloadedFile", "FeatureCost", "RateLimiter", "SlidingWindowLimiter",
    "TaskStatus", "Template", "UploadSlot", "limiter_from_settings", "shared_limiter",
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
                assert not bad, f"{module.name} imports {name}"


def test_method_signatures_match_the_contract_with_the_pipeline() -> None:
    expected = {
        "request_upload": ["self", "file_name", "content_type", "file_size"],
        "put_file": ["self", "slot", "path"],
        "upload_file": ["self", "path", "content_type", "file_name"],
        "create_task": [
            "self", "src_file_id", "src_file_url", "prompt", "template_id", "task_type", "before_send"
        ],
        "get_task": ["self", "task_id"],
        "list_templates": ["self", "page_size"],
        "delete_task": ["self", "task_id"],
        "credit_balance": ["self"],
        "credit_history": ["self", "page_size", "max_pages", "since"],
        "credit_history_page": ["self", "token", "page_size"],
        "feature_costs": ["self", "page_size"],
        "download": ["self", "url", "dest", "max_bytes"],
    }
    for name, params in expected.items():
        method = getattr(BackdropClient, name)
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters) == params, name
    init = list(inspect.signature(BackdropClient.__init__).parameters)
    assert init[:6] == ["self", "settings", "limiter", "transport", "storage_transport", "sleep"]
