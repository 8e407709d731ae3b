"""Totals per day, run and deployment, and the FOCUS rows, from a ledger filled by hand."""

from __future__ import annotations

import json
from datetime import date

import pytest

from backdrop.cost import FOCUS_COLUMNS, LOCAL, SERVICE_NAME, build_cost_report
from backdrop.settings import BackdropSettings
from tests.cost.helpers import LedgerFiller, at

NOV = (date(2026, 11, 1), date(2026, 11, 8))


def _settings(**kw: object) -> BackdropSettings:
    return BackdropSettings(unit_price=0.05, currency="EUR", **kw)


def _by(df: object, key: str) -> dict[str, dict[str, object]]:
    return {r[key]: r for r in df.to_dict("records")}  # type: ignore[attr-defined]


def test_days_count_creates_charges_failures_and_pending(filler: LedgerFiller) -> None:
    filler.add(at(2, 9), "succeeded", units=4)
    filler.add(at(2, 10), "failed")  # an engine error: not charged
    filler.add(at(2, 11), "pending_reconcile", units=4)  # charged, download lost: still a charge
    filler.add(at(3), "created")
    filler.add(at(3), "ambiguous", task_id="")
    report = build_cost_report(filler.ledger, *NOV, _settings(), now=at(5))

    days = _by(report.daily.astype({"day": str}), "day")
    assert list(days) == [f"2026-11-0{d}" for d in range(1, 8)]  # every day of the period, empty ones too
    cols = ("created", "succeeded", "failed", "pending", "units", "cost")
    assert {k: days["2026-11-02"][k] for k in cols} == \
        {"created": 3, "succeeded": 2, "failed": 1, "pending": 0, "units": 8, "cost": 0.4}
    assert {k: days["2026-11-03"][k] for k in cols} == \
        {"created": 2, "succeeded": 0, "failed": 0, "pending": 2, "units": 0, "cost": 0.0}
    assert days["2026-11-01"]["created"] == 0
    assert report.totals == {"created": 5, "succeeded": 2, "failed": 1, "pending": 2, "units": 8, "cost": 0.4}


def test_the_period_is_half_open_in_utc(filler: LedgerFiller) -> None:
    filler.add(at(1, 0, 0), "succeeded", units=4)  # midnight of `since`: in
    filler.add(at(7, 23, 59), "succeeded", units=4)  # last minute of the last day: in
    filler.add(at(8, 0, 0), "succeeded", units=4)  # midnight of `until`: out
    filler.add(at(31, month=10, hour=23, minute=59), "succeeded", units=4)  # the day before: out
    report = build_cost_report(filler.ledger, *NOV, _settings(), now=at(8))
    assert report.totals["units"] == 8
    assert report.totals["created"] == 2


def test_a_charge_counts_on_the_day_it_was_charged_not_created(filler: LedgerFiller) -> None:
    """Created a minute before midnight, charged a minute after: the next day's cost, in every table."""
    paid = filler.add(at(2, 23, 59), "succeeded", units=4, charged_at=at(3, 0, 1))
    filler.add(at(7, 23, 59), "succeeded", units=4, charged_at=at(8, 0, 1))  # charged after the period
    filler.add(at(31, month=10, hour=23, minute=59), "succeeded", units=4, charged_at=at(1, 0, 1))  # in
    report = build_cost_report(filler.ledger, *NOV, _settings(), now=at(8))
    days = _by(report.daily.astype({"day": str}), "day")
    assert (days["2026-11-02"]["units"], days["2026-11-03"]["units"]) == (0, 4)
    assert (days["2026-11-01"]["created"], days["2026-11-01"]["units"]) == (1, 4)
    assert report.totals["units"] == 8
    assert report.focus.set_index("ResourceId").loc[paid, "ChargePeriodStart"] == "2026-11-03T00:00:00Z"


def test_charges_count_for_the_run_that_recorded_them_creates_for_the_run_that_made_them(
    filler: LedgerFiller,
) -> None:
    filler.add(at(2), "succeeded", units=4, run_id="run-a")
    filler.add(at(2), "succeeded", units=4, run_id="run-a", charged_run_id="run-b")  # run b resumed a's task
    filler.add(at(2), "failed", run_id="run-b")
    runs = _by(build_cost_report(filler.ledger, *NOV, _settings(), now=at(5)).runs, "run_id")
    assert {k: runs["run-a"][k] for k in ("created", "succeeded", "failed", "units")} == \
        {"created": 2, "succeeded": 1, "failed": 0, "units": 4}
    assert {k: runs["run-b"][k] for k in ("created", "succeeded", "failed", "units")} == \
        {"created": 1, "succeeded": 1, "failed": 1, "units": 4}


def test_deployments_show_local_runs_as_local(filler: LedgerFiller) -> None:
    filler.add(at(2), "succeeded", units=4, deployment="change-backgrounds/inbox-nightly")
    filler.add(at(3), "succeeded", units=4, deployment="change-backgrounds/inbox-nightly")
    filler.add(at(3), "succeeded", units=4)
    deps = _by(build_cost_report(filler.ledger, *NOV, _settings(), now=at(5)).deployments, "deployment")
    assert {d: (r["succeeded"], r["units"], r["cost"]) for d, r in deps.items()} == {
        "change-backgrounds/inbox-nightly": (2, 8, 0.4), LOCAL: (1, 4, 0.2)}


def test_only_the_given_environments_count(filler: LedgerFiller) -> None:
    filler.add(at(2), "succeeded", units=4, environment="real-account")
    filler.add(at(2), "succeeded", units=4, environment="sandbox")
    report = build_cost_report(filler.ledger, *NOV, _settings(), environments={"real-account"}, now=at(5))
    assert report.totals["units"] == 4
    assert build_cost_report(filler.ledger, *NOV, _settings(), now=at(5)).totals["units"] == 8


def test_an_empty_ledger_gives_zero_rows_per_day(filler: LedgerFiller) -> None:
    report = build_cost_report(filler.ledger, *NOV, _settings(), now=at(5))
    assert len(report.daily) == 7 and report.daily["units"].sum() == 0
    assert report.runs.empty and report.focus.empty
    assert list(report.focus.columns) == FOCUS_COLUMNS


def test_until_must_follow_since(filler: LedgerFiller) -> None:
    with pytest.raises(ValueError, match="must be after"):
        build_cost_report(filler.ledger, date(2026, 11, 2), date(2026, 11, 2), _settings())


def test_focus_rows_one_per_charge(filler: LedgerFiller) -> None:
    paid = filler.add(at(3, 17), "succeeded", units=4, run_id="run-a", deployment="cb/nightly")
    filler.add(at(3, 18), "failed")
    focus = build_cost_report(filler.ledger, *NOV, _settings(), now=at(5)).focus
    assert len(focus) == 1
    row = focus.iloc[0].to_dict()
    tags = json.loads(row.pop("Tags"))
    assert row == {
        "ChargePeriodStart": "2026-11-03T00:00:00Z", "ChargePeriodEnd": "2026-11-04T00:00:00Z",
        "BilledCost": 0.2, "EffectiveCost": 0.2, "BillingCurrency": "EUR", "ConsumedQuantity": 4,
        "ConsumedUnit": "unit", "ResourceId": paid, "ChargeCategory": "Usage",
        "ChargeDescription": "background change (one successful task)", "ProviderName": "Perfect Corp",
        "ServiceName": SERVICE_NAME}
    assert tags == {"run_id": "run-a", "deployment": "cb/nightly", "row_id": "row-0"}
