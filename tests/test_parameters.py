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
        lengths = [prop[k] for k in ("maxLength", "minLength") if k in prop]
        for length in lengths:
            assert str(length) in prop["description"], (name, length, prop["description"])


#: the JSON-schema keywords a parameter may carry: what Prefect's form renders and its server validates
SCHEMA_KEYWORDS = {"default", "description", "position", "title", "type", "enum", "format", "anyOf", "minimum",
                   "maximum", "maxLength", "minLength"}


def _schema(flow_fn: str) -> dict[str, Any]:
    from prefect.utilities.callables import parameter_schema

    import flows.change_backgrounds
    import flows.cost_report

    fn = {"change_backgrounds": flows.change_backgrounds.change_backgrounds,
          "cost_report": flows.cost_report.cost_report}[flow_fn]
    return parameter_schema(fn).model_dump_for_openapi()


@pytest.mark.parametrize("flow_fn", ["change_backgrounds", "cost_report"])
def test_every_bound_reaches_the_schema_as_json_schema(flow_fn: str) -> None:
    """A bound pydantic cannot put into JSON schema lands there under its Python name (`ge`, `max_length`: a
    validator placed before the Field does that): the form shows no range and the server checks none."""
    for name, prop in _schema(flow_fn)["properties"].items():
        keys = set(prop) | {k for option in prop.get("anyOf", []) for k in option}
        assert keys <= SCHEMA_KEYWORDS, (name, sorted(keys - SCHEMA_KEYWORDS))


@pytest.mark.parametrize(("values", "message"), [
    ({"max_units": -5}, "Validation failed for field 'max_units'. Failure reason: -5 is less than the minimum of -1"),
    ({"concurrency": 65}, "Failure reason: 65 is greater than the maximum of 64"),
    ({"feature": "bg-remove"}, "'bg-remove' is not one of ['default', 'auto', 'bg-replace', 'bg-replace-v2']"),
    ({"prompt": "x" * 2001}, "Validation failed for field 'prompt'. Failure reason: 'xxxxx"),
])
def test_the_server_refuses_a_bad_value_in_words(values: dict[str, Any], message: str) -> None:
    """What the run form's toast says when the server refuses a run (Prefect validates the parameters against this
    schema): the bound in words, never "not valid under any of the given schemas"."""
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    with pytest.raises(ValidationError) as refused:
        validate({"csv": "a.csv", **values}, _schema("change_backgrounds"), raise_on_error=True)
    assert message in str(refused.value)
    assert "any of the given schemas" not in str(refused.value)


def test_null_from_an_older_caller_keeps_its_old_meaning() -> None:
    """Scripts and deployments made before the form lost its None toggles send null: still no cap, still the
    setting's feature, still the CSV's prompts."""
    import flows.change_backgrounds

    fn = flows.change_backgrounds.change_backgrounds
    values = fn.validate_parameters({"csv": "a.csv", "max_units": None, "feature": None, "prompt": None})
    assert (values["max_units"], values["feature"], values["prompt"]) == (-1, "default", "")
    from backdrop.params import budget_cap, feature_override

    assert (budget_cap(values["max_units"]), budget_cap(0), budget_cap(4000)) == (None, 0, 4000)
    assert (feature_override("default"), feature_override("auto"), feature_override("bg-replace")) == (
        None, "auto", "bg-replace")


@pytest.mark.parametrize("max_units", [-2, -400])
def test_a_negative_budget_other_than_no_cap_is_refused_even_past_validation(max_units: int) -> None:
    """-1 is the only "no cap". A caller that skips parameter validation (`change_backgrounds.fn(...)`, a
    script) and sends another negative meant some budget, never "spend without limit": fail closed."""
    from backdrop.params import budget_cap

    with pytest.raises(ValueError, match="max_units"):
        budget_cap(max_units)
