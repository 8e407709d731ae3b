"""The flows' parameters: the one owner of each one's name, type, default, description and range.

`BatchParameters` (the `change-backgrounds` flow) and `CostParameters` (the `cost-report` flow) list the
parameters in order. Each type is an `Annotated` alias carrying its range and description, used by the model
and by the flow's signature, so Prefect's form gets the bounds from the annotation. Prefect (3.8 and 3.9) takes
a parameter's description from the docstring's Args section only (it drops an `Annotated` Field's), and cyclopts
takes its help from the docstring's Parameters section (it ignores a Field's description), so `documented`
writes both sections from the model and refuses a signature that disagrees with it. README's parameter tables
are `markdown_table`'s output (a test regenerates them). Prefect-free and cyclopts-free.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.fields import FieldInfo

from backdrop.settings import InputMode as InputModeName

F = TypeVar("F", bound=Callable[..., Any])

# The batch flow (flows/change_backgrounds.py) and `backdrop run`.
Csv = Annotated[str, Field(description=(
    "CSV location, a path or a URL. Columns image_url (http(s) URL or a path relative to the CSV's folder) and "
    "prompt; optional id and template_id; other columns pass through to the report."))]
BatchOut = Annotated[str, Field(description=(
    "Output folder for the pictures, report.csv, report.parquet and summary.json."))]
#: an old caller (a deployment or script from before the form lost its None toggles) may still send null. A
#: validator goes AFTER the Field: before it, pydantic writes the bounds into the JSON schema under their Python
#: names (`ge`, `max_length`), which neither the form nor the server's validation reads.
NoneIsEmpty = BeforeValidator(lambda value: "" if value is None else value)

Prompt = Annotated[str, Field(max_length=2000, description=(
    "One prompt for every row, replacing the CSV's prompts; empty keeps the CSV's (at most 2000 characters)."
)), NoneIsEmpty]
TemplateId = Annotated[str, Field(max_length=200, description=(
    "One template id for every row (feature bg-replace), replacing prompts; empty keeps the CSV's (at most 200 "
    "characters).")), NoneIsEmpty]
InputMode = Annotated[InputModeName, Field(description=(
    "upload sends the bytes; url passes http(s) URLs straight to the API; auto passes URLs the vendor can "
    "reach and uploads the rest."))]
Concurrency = Annotated[int, Field(ge=1, le=64, description=(
    "Pictures in flight at once, 1 to 64 (the rate limiter paces requests whatever this is)."))]
#: max_units' "no cap": a number, so that the form shows a plain number field and says "less than the minimum of -1"
#: in words instead of a None toggle and "not valid under any of the given schemas". Negative budgets were refused
#: before, so no earlier caller meant anything else by it; 0 stays a real budget (nothing that costs is created).
NO_CAP = -1
MaxUnits = Annotated[int, Field(ge=NO_CAP, description=(
    "Unit budget for this run (4 units a picture): no task is created that could take the run past it. -1 means "
    "no cap; 0 creates nothing that costs.")), BeforeValidator(lambda value: NO_CAP if value is None else value)]
DryRun = Annotated[bool, Field(description="Check every row and estimate units and cost, creating nothing.")]
#: the feature choices of the form: "default" is the BACKDROP_FEATURE setting (an operator's, for the deployment)
FeatureName = Literal["default", "auto", "bg-replace", "bg-replace-v2"]
Feature = Annotated[FeatureName, Field(description=(
    "Feature slug: default follows the BACKDROP_FEATURE setting (auto unless an operator set it); auto picks the "
    "slug the account's feature-cost list names; bg-replace or bg-replace-v2 forces one.")),
    BeforeValidator(lambda value: "default" if value is None else value)]
FitInputs = Annotated[bool, Field(description=(
    "Downscale pictures over 4096 px and convert webp/gif/bmp/tiff instead of failing them."))]

# The cost report flow (flows/cost_report.py) and `backdrop cost`.
Since = Annotated[date | None, Field(description=(
    "First day (UTC, YYYY-MM-DD) of the period; empty means the start of the current budget period "
    "(BACKDROP_BUDGET_PERIOD: month, week or day)."))]
Until = Annotated[date | None, Field(description=(
    "Day (UTC, YYYY-MM-DD) after the period's last, excluded; empty means tomorrow, so today is included."))]
CostOut = Annotated[str, Field(description=(
    "Folder for cost_focus/daily/runs/deployments (.csv, .parquet), cost_units_per_day.png and "
    "cost_summary.json."))]


class BatchParameters(BaseModel):
    """The `change-backgrounds` flow's parameters, in the order of its form (deployments name them so)."""

    model_config = ConfigDict(extra="forbid")

    csv: Csv
    out: BatchOut = "backdrop-output"
    prompt: Prompt = ""
    template_id: TemplateId = ""
    input_mode: InputMode = "upload"
    concurrency: Concurrency = 8
    max_units: MaxUnits = NO_CAP
    dry_run: DryRun = False
    feature: Feature = "default"
    fit_inputs: FitInputs = False


class CostParameters(BaseModel):
    """The `cost-report` flow's parameters."""

    model_config = ConfigDict(extra="forbid")

    since: Since = None
    until: Until = None
    out: CostOut = "cost-output"


def budget_cap(max_units: int | None) -> int | None:
    """The run's unit cap from the parameter: None (no cap) for -1 (or null from an old caller). Another negative
    (from a caller that skipped validation) is refused, never taken for "no cap"."""
    if max_units is not None and max_units < NO_CAP:
        raise ValueError(f"max_units={max_units}: -1 means no cap, a budget is 0 or more")
    return None if max_units is None or max_units == NO_CAP else max_units


def feature_override(feature: str | None) -> str | None:
    """The feature the run forces, or None to follow the BACKDROP_FEATURE setting (which checks the value)."""
    return None if feature in (None, "", "default") else feature


def description(model: type[BaseModel], name: str) -> str:
    """The description of one parameter, as the form, the CLI help and README show it."""
    return model.model_fields[name].description or ""


def _base(annotation: Any) -> Any:
    """The type without its `Annotated` metadata."""
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _check(model: type[BaseModel], fn: Callable[..., Any], *, exact_types: bool,
           own_types: tuple[str, ...]) -> list[str]:
    """The model's parameters `fn` takes; raises TypeError when its signature disagrees with the model."""
    signature = inspect.signature(fn, eval_str=True)
    names = [name for name in signature.parameters if name in model.model_fields]
    hints = get_type_hints(model, include_extras=True)
    for name in names:
        param, field = signature.parameters[name], model.model_fields[name]
        default = inspect.Parameter.empty if field.is_required() else field.default
        if param.default != default:
            raise TypeError(f"{fn.__name__}({name}=...): default {param.default!r}, the model says {default!r}")
        expected = hints[name] if exact_types else _base(hints[name])
        if name not in own_types and param.annotation != expected:
            raise TypeError(f"{fn.__name__}({name}: ...): type {param.annotation!r}, the model says {expected!r}")
    return names


def documented(model: type[BaseModel], *, style: Literal["google", "numpy"],
               own_types: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Write the model's descriptions into `fn`'s docstring and check its signature against the model.

    style="google" (a flow: Prefect reads the Args section; its signature must use the model's annotated
    types), "numpy" (a CLI command: cyclopts reads the Parameters section, which the docstring opens and
    this completes; its types are the plain ones, or its own for the names in `own_types`, which it parses
    itself). Every default must be the model's.
    """

    def apply(fn: F) -> F:
        names = _check(model, fn, exact_types=style == "google", own_types=own_types)
        doc = inspect.cleandoc(fn.__doc__ or "")
        if style == "numpy":  # the docstring ends with its Parameters section: complete it
            fn.__doc__ = "\n".join([doc, *(f"{n}\n    {description(model, n)}" for n in names)])
            return fn
        summary, returns, rest = doc.partition("\n\nReturns:")  # Args go before a Returns section
        args = "\n".join(["Args:", *(f"    {n}: {description(model, n)}" for n in names)])
        fn.__doc__ = f"{summary}\n\n{args}{returns}{rest}"
        return fn

    return apply


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    return "empty" if field.default in (None, "") else f"`{str(field.default).lower()}`" if isinstance(
        field.default, bool) else f"`{field.default}`"


def markdown_table(model: type[BaseModel]) -> str:
    """README's table of one flow's parameters: name, default, meaning."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {_default(field)} | {field.description} |" for name, field in model.model_fields.items()]
    return "\n".join(rows) + "\n"
