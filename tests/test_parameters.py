"""One owner for the flows' parameters: the Prefect form, the CLI's help and README's tables all say what
backdrop/params.py says (names, defaults, descriptions, ranges), and nothing else can drift from it."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import BaseModel
from rich.console import Console

from backdrop.cli import app
from backdrop.params import BatchParameters, Concurrency, CostParameters, Csv, documented, markdown_table
from flows.change_backgrounds import change_backgrounds
from flows.cost_report import cost_report

ROOT = Path(__file__).resolve().parents[1]
FLOWS = [(BatchParameters, change_backgrounds, "run"), (CostParameters, cost_report, "cost")]
IDS = ["change-backgrounds", "cost-report"]


@pytest.mark.parametrize(("model", "flow", "command"), FLOWS, ids=IDS)
def test_the_prefect_form_is_the_model(model: type[BaseModel], flow: Any, command: str) -> None:
    schema = parameter_schema(flow.fn).model_dump()
    props: dict[str, dict[str, Any]] = schema["properties"]
    expected = model.model_json_schema()["properties"]
    assert list(props) == list(model.model_fields)
    for name, field in model.model_fields.items():
        assert props[name]["description"] == field.description, name
        if not field.is_required():
            assert props[name]["default"] == expected[name]["default"], name
        for bound in ("minimum", "maximum"):  # the ranges, where the model has any
            assert _bounds(props[name], bound) == _bounds(expected[name], bound), name
    assert schema["required"] == [n for n, f in model.model_fields.items() if f.is_required()]


def _bounds(prop: dict[str, Any], bound: str) -> list[Any]:
    return [p[bound] for p in [prop, *prop.get("anyOf", [])] if bound in p]


@pytest.mark.parametrize(("model", "flow", "command"), FLOWS, ids=IDS)
def test_the_cli_help_is_the_model(model: type[BaseModel], flow: Any, command: str) -> None:
    buf = io.StringIO()
    app.help_print([command], console=Console(file=buf, width=1000))
    lines = buf.getvalue().splitlines()
    for name, field in model.model_fields.items():
        option = "CSV" if name == "csv" else f"--{name.replace('_', '-')}"
        (line,) = [line for line in lines if re.search(rf"[│*]\s+{option}\s", line)]
        assert field.description and field.description in line, (name, line)


@pytest.mark.parametrize("model", [BatchParameters, CostParameters], ids=IDS)
def test_the_readme_table_is_generated_from_the_model(model: type[BaseModel]) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- parameters: {model.__name__} -->\n(.*?)<!-- /parameters -->", readme, re.S)
    assert match, f"README.md lacks the {model.__name__} table"
    assert match.group(1) == markdown_table(model), "regenerate it with backdrop.params.markdown_table"


def test_a_signature_that_disagrees_with_the_model_is_refused() -> None:
    def wrong_default(csv: Csv, concurrency: Concurrency = 4) -> None: ...

    def wrong_type(csv: Csv, concurrency: int = 8) -> None: ...

    with pytest.raises(TypeError, match="default 4"):
        documented(BatchParameters, style="google")(wrong_default)
    with pytest.raises(TypeError, match="type"):
        documented(BatchParameters, style="google")(wrong_type)
    # a CLI command takes the plain types (cyclopts would check the range itself) and gets the help
    def plain(csv: str, concurrency: int = 8) -> None:
        """Run.

        Parameters
        ----------
        """

    assert "concurrency\n    Pictures in flight" in (documented(BatchParameters, style="numpy")(plain).__doc__ or "")


def test_the_parameters_module_knows_neither_prefect_nor_cyclopts() -> None:
    tree = ast.parse((ROOT / "backdrop" / "params.py").read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m.split(".")[0] for m in modules} & {"prefect", "cyclopts", "flows", "tasks"}


#: parameters that stay optional (a `None` toggle in the form), each because no value of its type means "unset"
OPTIONAL_ON_PURPOSE = {
    "max_units": "0 is a real budget (create nothing that costs): only empty may mean no budget",
    "feature": "empty means the BACKDROP_FEATURE setting, which an operator sets for the whole deployment",
    "since": "empty means the budget period's first day, which depends on BACKDROP_BUDGET_PERIOD",
    "until": "empty means tomorrow, a date that moves",
}


@pytest.mark.parametrize("flow_fn", ["change_backgrounds", "cost_report"])
def test_the_run_form_has_no_needless_none_toggles_and_states_its_ranges(flow_fn: str) -> None:
    """What the deployment's form shows: every field described, `None` only where no default does the job,
    numeric bounds in the schema and in words in the description."""
    from prefect.utilities.callables import parameter_schema

    import flows.change_backgrounds
    import flows.cost_report

    fn = {"change_backgrounds": flows.change_backgrounds.change_backgrounds,
          "cost_report": flows.cost_report.cost_report}[flow_fn]
    schema = parameter_schema(fn).model_dump_for_openapi()
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
        nullable = any(option.get("type") == "null" for option in prop.get("anyOf", []))
        assert nullable == (name in OPTIONAL_ON_PURPOSE), (name, prop)
        bounds = [prop.get(k) for k in ("minimum", "maximum") if k in prop]
        bounds += [o.get(k) for o in prop.get("anyOf", []) for k in ("minimum", "maximum") if k in o]
        for bound in bounds:
            assert str(bound) in prop["description"], (name, bound, prop["description"])
