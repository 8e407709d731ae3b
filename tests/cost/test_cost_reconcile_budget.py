"""The ledger against the vendor's credit history, both ways; and the budget's share and projection."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from backdrop.client import CreditHistoryEntry
from backdrop.cost import BudgetPeriod, Reconciliation, budget_window, build_cost_report
from backdrop.settings import BackdropSettings
from tests.cost.helpers import LedgerFiller, at, charge

NOV = (date(2026, 11, 1), date(2026, 11, 8))


def _recon(filler: LedgerFiller, history: list[CreditHistoryEntry]) -> Reconciliation:
    report = build_cost_report(filler.ledger, *NOV, BackdropSettings(), history=history, now=at(5))
    assert report.reconciliation is not None
    return report.reconciliation


def test_matching_history_reconciles_cleanly(filler: LedgerFiller) -> None:
    a = filler.add(at(2), "succeeded", units=4)
    b = filler.add(at(3), "succeeded", units=4)
    filler.add(at(3), "failed", task_id="engine-error")  # no charge on either side
    history = [charge(b, at(3, 12, 1)), charge(a, at(2, 12, 1))]
    report = build_cost_report(filler.ledger, *NOV, BackdropSettings(), history=history, now=at(5))
    recon = report.reconciliation
    assert recon is not None
    assert (recon.vendor_units, recon.ledger_units, recon.difference) == (8.0, 8, 0.0)
    assert recon.unknown_to_ledger == [] and recon.missing_at_vendor == []
    assert report.totals["vendor_units"] == 8.0
    per_day = dict(zip(report.daily["day"].astype(str), report.daily["vendor_units"], strict=True))
    assert per_day["2026-11-02"] == 4.0


def test_vendor_charges_unknown_to_the_ledger_and_ledger_charges_the_vendor_lacks(
    filler: LedgerFiller,
) -> None:
    known = filler.add(at(2), "succeeded", units=4)
    lost = filler.add(at(4), "succeeded", units=4, run_id="run-z")  # the vendor never shows it
    history = [charge(known, at(2, 12, 1)), charge("elsewhere-1", at(3, 8)), charge(None, at(4, 9), units=2)]
    recon = _recon(filler, history)
    assert [(u["task_id"], u["units"]) for u in recon.unknown_to_ledger] == \
        [("elsewhere-1", 4.0), (None, 2.0)]
    assert recon.unknown_to_ledger[0]["time"] == "2026-11-03T08:00:00+00:00"
    assert [(m["task_id"], m["units"], m["run_id"], m["row_id"]) for m in recon.missing_at_vendor] == \
        [(lost, 4, "run-z", "row-1")]
    assert (recon.vendor_units, recon.ledger_units, recon.difference) == (10.0, 8, 2.0)


def test_boundaries_match_across_clock_slack_and_earlier_ledger_rows(filler: LedgerFiller) -> None:
    early = filler.add(at(1, 0, 1), "succeeded", units=4)  # the vendor stamped it two minutes earlier
    before = filler.add(at(31, month=10), "succeeded", units=4)  # outside the period, charged inside it
    history = [charge(early, at(31, 23, 59, month=10)), charge(before, at(1, 0, 0)),
               charge("after-the-period", at(8, 0, 0)), charge(None, at(2), units=-5)]  # -5: a purchase
    recon = _recon(filler, history)
    assert recon.missing_at_vendor == []  # the early stamp still matches its row
    assert recon.unknown_to_ledger == []  # `before` is known to the ledger, just from an earlier day
    assert recon.vendor_units == 4.0  # only charges inside the period, purchases excluded


def test_no_history_means_no_reconciliation(filler: LedgerFiller) -> None:
    filler.add(at(2), "succeeded", units=4)
    report = build_cost_report(filler.ledger, *NOV, BackdropSettings(), now=at(5))
    assert report.reconciliation is None and "vendor_units" not in report.daily


@pytest.mark.parametrize(("today", "period", "window"), [
    (date(2026, 11, 18), "month", (date(2026, 11, 1), date(2026, 12, 1))),
    (date(2026, 12, 31), "month", (date(2026, 12, 1), date(2027, 1, 1))),  # the year turns
    (date(2028, 2, 29), "month", (date(2028, 2, 1), date(2028, 3, 1))),
    (date(2026, 11, 18), "week", (date(2026, 11, 16), date(2026, 11, 23))),  # a Wednesday: from Monday
    (date(2026, 11, 16), "week", (date(2026, 11, 16), date(2026, 11, 23))),
    (date(2026, 11, 18), "day", (date(2026, 11, 18), date(2026, 11, 19))),
])
def test_budget_windows(today: date, period: BudgetPeriod, window: tuple[date, date]) -> None:
    assert budget_window(today, period) == window


def test_budget_share_and_linear_projection(filler: LedgerFiller) -> None:
    for day in (1, 2, 3):
        filler.add(at(day), "succeeded", units=4)
    filler.add(at(28, month=10), "succeeded", units=400)  # last month: not this period's
    settings = BackdropSettings(budget_units=200, budget_warn_at=0.8)
    budget = build_cost_report(filler.ledger, *NOV, settings, now=at(6)).budget
    assert budget is not None
    assert (budget.used_units, budget.days_elapsed, budget.days_total) == (12, 6, 30)
    assert budget.projected_units == 60.0  # 12 units in 6 days -> 60 in 30
    assert (round(budget.share, 3), budget.projected_share, budget.alert) == (0.06, 0.3, False)


@pytest.mark.parametrize(("used", "today", "alert", "why"), [
    (160, 30, True, "the share used reaches 80%"),
    (40, 5, True, "the projection (240 of 200) reaches 80%"),
    (40, 25, False, "40 used, 48 projected: well under"),
    (0, 1, False, "nothing spent"),
])
def test_budget_alarm(filler: LedgerFiller, used: int, today: int, alert: bool, why: str) -> None:
    if used:
        filler.add(at(1), "succeeded", units=used)
    settings = BackdropSettings(budget_units=200, budget_period="month", budget_warn_at=0.8)
    budget = build_cost_report(filler.ledger, *NOV, settings, now=at(today)).budget
    assert budget is not None and budget.alert is alert, why


def test_no_budget_setting_means_no_budget(filler: LedgerFiller) -> None:
    assert build_cost_report(filler.ledger, *NOV, BackdropSettings(), now=at(5)).budget is None


def test_budget_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_BUDGET_UNITS", "4000")
    monkeypatch.setenv("BACKDROP_BUDGET_PERIOD", "week")
    monkeypatch.setenv("BACKDROP_BUDGET_WARN_AT", "0.5")
    s = BackdropSettings()
    assert (s.budget_units, s.budget_period, s.budget_warn_at) == (4000, "week", 0.5)
    monkeypatch.setenv("BACKDROP_BUDGET_PERIOD", "year")
    with pytest.raises(ValueError, match="budget_period"):
        BackdropSettings()


def test_week_budget_counts_only_this_week(filler: LedgerFiller) -> None:
    filler.add(at(15), "succeeded", units=100)  # Sunday: last week
    filler.add(at(16), "succeeded", units=8)  # Monday
    settings = BackdropSettings(budget_units=100, budget_period="week")
    budget = build_cost_report(filler.ledger, date(2026, 11, 16), date(2026, 11, 17), settings,
                               now=at(17)).budget
    assert budget is not None
    assert (budget.start, budget.end - timedelta(days=7), budget.used_units) == \
        (date(2026, 11, 16), date(2026, 11, 16), 8)
    assert budget.projected_units == 28.0  # 8 in 2 days -> 28 in 7
