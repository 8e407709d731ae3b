"""prefect.yaml and deployments/serve.py offline: entrypoints load, defaults pass, forms work."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import prefect
import pytest
import yaml
from prefect.exceptions import ParameterTypeError
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS: list[dict[str, Any]] = SPEC["deployments"]
NAMES = [d["name"] for d in DEPLOYMENTS]
Flows = dict[str, Flow[Any, Any]]
FLOW_NAMES = {"flows/change_backgrounds.py:change_backgrounds": "change-backgrounds",
              "flows/cost_report.py:cost_report": "cost-report"}


@pytest.fixture(scope="module")
def flows() -> Flows:
    """Each entrypoint loaded as `prefect deploy` and the worker load it: relative to the root."""
    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    try:
        return {ep: load_flow_from_entrypoint(ep) for ep in {d["entrypoint"] for d in DEPLOYMENTS}}
    finally:
        mp.undo()


def _by_name(name: str) -> dict[str, Any]:
    return next(d for d in DEPLOYMENTS if d["name"] == name)


def test_the_file_declares_the_manual_and_nightly_deployments() -> None:
    assert NAMES == ["manual", "inbox-nightly", "cost-daily"]
    assert SPEC["prefect-version"] == prefect.__version__ == "3.9.1"  # the release pyproject pins
    assert "pull" not in SPEC  # the worker runs from the folder `prefect deploy` ran in


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_loads_and_accepts_the_default_parameters(name: str, flows: Flows) -> None:
    dep = _by_name(name)
    assert (ROOT / dep["entrypoint"].split(":")[0]).is_file()
    flow = flows[dep["entrypoint"]]
    assert flow.name == FLOW_NAMES[dep["entrypoint"]]
    validated = flow.validate_parameters(dep["parameters"])
    assert {k: validated[k] for k in dep["parameters"]} == dep["parameters"]


@pytest.mark.parametrize("name", NAMES)
def test_every_deployment_uses_the_process_pool_of_the_definitions(name: str) -> None:
    pool = SPEC["definitions"]["work_pool"]
    assert pool == {"name": "backdrop-process", "work_queue_name": "default"}
    assert _by_name(name)["work_pool"] == pool


def test_the_nightly_schedule_is_a_cron_in_a_named_timezone() -> None:
    nightly = _by_name("inbox-nightly")
    assert nightly["schedules"] == [
        {"cron": "0 2 * * *", "timezone": "Europe/Paris", "active": True}]
    assert nightly["concurrency_limit"] == 1
    assert nightly["parameters"]["max_units"] == 4000  # an unattended run never spends uncapped
    assert "schedules" not in _by_name("manual")


def test_a_bad_parameter_is_refused_before_any_run(flows: Flows) -> None:
    flow = flows[_by_name("manual")["entrypoint"]]
    for bad in ({"csv": "a.csv", "concurrency": 0}, {"csv": "a.csv", "concurrency": 65},
                {"csv": "a.csv", "input_mode": "ftp"}, {"csv": "a.csv", "max_units": -2},
                {"csv": "a.csv", "feature": "bg-remove"},
                {"out": "no-csv"}):
        with pytest.raises(ParameterTypeError):
            flow.validate_parameters(bad)


def test_the_run_form_describes_every_parameter_with_enums_and_bounds(flows: Flows) -> None:
    schema = parameter_schema(flows[_by_name("manual")["entrypoint"]]).model_dump()
    props: dict[str, dict[str, Any]] = schema["properties"]
    assert list(props) == ["csv", "out", "prompt", "template_id", "input_mode", "concurrency",
                           "max_units", "dry_run", "feature", "fit_inputs"]
    assert [name for name, p in props.items() if not p.get("description", "").strip()] == []
    assert props["input_mode"]["enum"] == ["upload", "url", "auto"]
    assert (props["concurrency"]["minimum"], props["concurrency"]["maximum"]) == (1, 64)
    assert schema["required"] == ["csv"]
    assert not [name for name in props if "key" in name]  # the API key never is a parameter


def _serve_module() -> Any:
    path = ROOT / "deployments" / "serve.py"
    spec = importlib.util.spec_from_file_location("backdrop_serve_under_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serve_builds_the_same_deployments_with_a_served_suffix(flows: Flows) -> None:
    served = {d.name: d for d in _serve_module().deployments()}
    assert sorted(served) == sorted(f"{n}-served" for n in NAMES)
    for name in NAMES:
        dep, twin = _by_name(name), served[f"{name}-served"]
        flow = flows[dep["entrypoint"]]
        assert (twin.flow_name, twin.tags) == (FLOW_NAMES[dep["entrypoint"]], dep["tags"])
        # the same effective parameters once the flow's defaults are filled in
        assert flow.validate_parameters(twin.parameters) == flow.validate_parameters(
            dep["parameters"])
    (nightly,) = served["inbox-nightly-served"].schedules
    assert (nightly.schedule.cron, nightly.schedule.timezone, nightly.active) == (
        "0 2 * * *", "Europe/Paris", True)
    assert served["manual-served"].schedules == []


BATCH = [d for d in DEPLOYMENTS if d["entrypoint"] == "flows/change_backgrounds.py:change_backgrounds"]


@pytest.mark.parametrize("name", [d["name"] for d in BATCH])
def test_batch_deployments_name_their_roots_and_their_defaults_lie_inside(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parameters are a trust boundary: each batch deployment lists the folders its runs may read and write
    (job variables, so the worker's environment cannot widen them), and its own defaults pass."""
    from backdrop.pipeline.inputs import read_rows
    from backdrop.roots import confine_output, input_roots, within
    from backdrop.settings import BackdropSettings

    env = _by_name(name)["job_variables"]["env"]
    assert set(env) >= {"BACKDROP_INPUT_ROOTS", "BACKDROP_OUTPUT_ROOTS"}
    monkeypatch.chdir(ROOT)  # the worker runs flows from this checkout
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = BackdropSettings()
    assert ROOT.resolve() not in input_roots(settings)  # an explicit list, not the whole checkout
    params = _by_name(name)["parameters"]
    assert confine_output(params["out"]) == (ROOT / params["out"]).resolve()
    assert within(params["csv"], input_roots(settings)) == (ROOT / params["csv"]).resolve()
    if (ROOT / params["csv"]).is_file():
        read_rows(params["csv"])
    for refused in ("/proc/self/environ", "prefect.yaml", "README.md"):
        assert within(refused, input_roots(settings)) is None


def test_served_deployments_use_the_same_roots() -> None:
    (env,) = {json_env(d["job_variables"]["env"]) for d in BATCH}
    assert json_env(_serve_module().ROOTS) == env


def json_env(env: dict[str, str]) -> str:
    return repr(sorted(env.items()))
