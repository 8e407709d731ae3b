"""The shape of the house, enforced: who may import whom, no hidden process-wide state, modules a reader can hold.

Every module under `backdrop/`, `tasks/`, `flows/` and `deployments/` is found by glob, so a new module is checked
without editing this file. A module belongs to a *unit*: a subpackage of `backdrop` (`client`, `pacing`, `store`,
`pipeline`, `report`, `cost`, `gallery`, `cli`, `sandbox`), the ground floor (`backdrop`'s own top-level modules:
settings, errors, identity, files, redact, fences, roots, params), or one of the top-level packages `tasks`, `flows`,
`deployments`. `RULES` says which units each unit may import; the layers point one way:

    cli, deployments -> flows -> tasks -> pipeline -> client -> HTTP
                                   pipeline -> store;  pacing -> store;  report/cost/gallery read what they need
    sandbox: nothing outside it imports it, and it imports nothing of the pipeline (reached only over HTTP)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("backdrop", "tasks", "flows", "deployments")
SUBPACKAGES = ("client", "pacing", "store", "pipeline", "report", "cost", "gallery", "cli", "sandbox")

#: unit -> the units (or exact modules) it may import; its own unit is always allowed
RULES: dict[str, set[str]] = {
    "ground": set(),
    "client": {"ground", "backdrop.pacing.memory"},  # the RateLimiter protocol only: no SQLAlchemy in the client
    "pacing": {"ground", "store"},
    "store": {"ground"},
    "pipeline": {"ground", "client", "store"},
    "report": {"ground", "pipeline"},
    "cost": {"ground", "client", "store", "report"},
    "gallery": {"ground", "pipeline", "report"},
    "cli": {"ground", "client", "pacing", "store", "pipeline", "report", "cost", "flows"},
    "sandbox": set(),
    "tasks": {"ground", "client", "pacing", "store", "pipeline", "report"},
    "flows": {"ground", "tasks", "client", "pipeline", "report", "gallery", "cost", "store"},
    "deployments": {"flows", "backdrop.cli.startup"},
}
#: units that may import Prefect; the library under backdrop/ is Prefect-free apart from its front end
PREFECT_UNITS = {"cli", "tasks", "flows", "deployments"}

#: files over 300 lines, each with the reason it stays whole
LONG_FILES: dict[str, str] = {}

#: module-level mutable state that is process-wide by nature, with the reason; anything else is a hidden global
PROCESS_WIDE: dict[tuple[str, str], str] = {
    ("backdrop.pacing.memory", "_shared"): "the vendor counts requests per key for the whole process: every run and "
                                           "client of one key must draw on one in-process window",
    ("backdrop.pacing.database", "_shared"): "one database limiter per (URL, key) per process, for the same reason",
    ("backdrop.pacing.slots", "_key_locks"): "threads of one process serialise on a key before they reach the database",
    ("backdrop.redact", "_registered"): "the secrets every log record is scrubbed of: a log filter is process-wide",
}


def _modules() -> list[Path]:
    return sorted(p for top in TOPS for p in (ROOT / top).rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "backdrop":
        return parts[0]
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "ground"


def _imports(path: Path) -> set[str]:
    """Every module imported (relative imports resolved), including `from pkg import submodule`."""
    module = _name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _internal(name: str) -> bool:
    return name.split(".")[0] in TOPS


def _allowed(unit: str, imported: str) -> bool:
    target = _unit(imported)
    if target == unit:
        return True
    rules = RULES[unit]
    return target in rules or any(imported == r or imported.startswith(r + ".") for r in rules if "." in r)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    unit = _unit(_name(path))
    bad = sorted(m for m in _imports(path) if _internal(m) and not _allowed(unit, m))
    assert not bad, f"{unit} may not import {bad} (RULES in {Path(__file__).name})"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_private_modules_stay_inside_their_unit(path: Path) -> None:
    unit = _unit(_name(path))
    bad = sorted(m for m in _imports(path) if _internal(m) and m.rpartition(".")[2].startswith("_")
                 and not m.endswith("__init__") and _unit(m) != unit)
    assert not bad, f"{_name(path)} reaches into another unit's private module {bad}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_prefect_only_in_the_front_end_and_task_layers(path: Path) -> None:
    if _unit(_name(path)) in PREFECT_UNITS:
        return
    bad = sorted(m for m in _imports(path) if m.split(".")[0] == "prefect")
    assert not bad, f"{_name(path)} imports {bad}: the library is Prefect-free"


def test_the_rules_name_every_unit_and_only_real_ones() -> None:
    units = {_unit(_name(p)) for p in _modules()}
    assert units == set(RULES), units ^ set(RULES)
    for allowed in RULES.values():
        for rule in allowed:
            assert rule in RULES or _is_module(rule), rule


def test_the_rules_can_fail() -> None:
    """The checker itself: a module that imports against the rules is caught (guards against a vacuous pass)."""
    assert not _allowed("client", "backdrop.store.ledger")
    assert not _allowed("pipeline", "tasks.create")
    assert not _allowed("tasks", "flows.change_backgrounds")
    assert not _allowed("ground", "backdrop.pipeline.steps")
    assert not _allowed("flows", "backdrop.sandbox.app")
    assert _allowed("client", "backdrop.pacing.memory") and not _allowed("client", "backdrop.pacing.database")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_says_what_it_owns(path: Path) -> None:
    tree = ast.parse(path.read_text())
    if not tree.body and path.name == "__init__.py":
        return  # an empty namespace marker (flows/, tasks/)
    assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} has no module docstring"


def test_no_module_is_too_long_to_hold_in_mind() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 300}
    unexplained = sorted(set(long) - set(LONG_FILES))
    assert not unexplained, {k: long[k] for k in unexplained}
    stale = sorted(set(LONG_FILES) - set(long))
    assert not stale, f"no longer long, drop from LONG_FILES: {stale}"


_MUTATORS = {"append", "add", "update", "setdefault", "pop", "popitem", "clear", "remove", "extend", "insert",
             "discard"}
_FACTORIES = {"dict", "list", "set", "defaultdict", "OrderedDict", "WeakValueDictionary", "WeakKeyDictionary",
              "deque", "Counter", "WeakSet"}


def module_state(source: str) -> set[str]:
    """Module-level containers that something mutates, and every `global` statement: hidden process-wide state."""
    tree = ast.parse(source)
    containers: set[str] = set()
    for node in tree.body:
        value = getattr(node, "value", None)
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        literal = isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp))
        made = isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) in _FACTORIES
        if literal or made:
            containers |= {t.id for t in targets if isinstance(t, ast.Name)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found |= {f"global {n}" for n in node.names}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS
              and isinstance(node.func.value, ast.Name) and node.func.value.id in containers):
            found.add(node.func.value.id)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            found |= {t.value.id for t in targets if isinstance(t, ast.Subscript)
                      and isinstance(t.value, ast.Name) and t.value.id in containers}
    return found


def test_no_hidden_process_wide_state() -> None:
    found = {(_name(p), name) for p in _modules() for name in module_state(p.read_text())}
    unexplained = sorted(found - set(PROCESS_WIDE))
    assert not unexplained, f"module-level mutable state (make it run-scoped, or say why in PROCESS_WIDE): " \
                            f"{unexplained}"
    assert not sorted(set(PROCESS_WIDE) - found), "stale PROCESS_WIDE entries"


def test_the_state_finder_finds_registries() -> None:
    assert module_state("_x: dict[str, int] = {}\ndef f():\n    _x['a'] = 1\n") == {"_x"}
    assert module_state("_y = []\ndef f():\n    _y.append(1)\n") == {"_y"}
    assert module_state("_r = None\ndef f():\n    global _r\n    _r = 1\n") == {"global _r"}
    assert module_state("COLUMNS = ['a', 'b']\n") == set()
