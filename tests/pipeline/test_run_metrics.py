"""The summary's run metrics (backdrop/report/metrics.py): plain arithmetic, checked without Prefect."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from backdrop.report import metrics
from backdrop.report.metrics import Traffic


@dataclass
class _Result:
    status: str = "succeeded"
    reused: bool = False
    task_id: str | None = "t"
    units: int = 4
    poll_gap: float | None = None
    error_code: str | None = None


@dataclass
class _Planner:
    first_polls: int = 4
    done_at_first: int = 1

    def first_delay(self) -> float:
        return 7.12345


def _snapshot(file: int, create: int, poll: int, credit: int = 0, **counts: int) -> dict[str, object]:
    return {"requests": {"file": file, "put": file, "create": create, "poll": poll, "credit": credit},
            "http_429": counts.get("http_429", 0), "retries": counts.get("retries", 0),
            "transport_errors": counts.get("transport_errors", 0)}


def test_traffic_sums_the_clients_and_counts_picture_requests_only() -> None:
    traffic = Traffic()
    traffic.add(_snapshot(2, 2, 5, credit=1, http_429=1))
    traffic.add(_snapshot(1, 1, 3, retries=2, transport_errors=1))
    assert traffic.requests == {"file": 3, "put": 3, "create": 3, "poll": 8, "credit": 1}
    assert (traffic.total, traffic.picture_requests()) == (18, 14)  # put and credit are not a picture's
    assert (traffic.http_429, traffic.retries, traffic.transport_errors) == (1, 2, 1)


def test_poll_wait_bound_takes_the_median_and_the_95th_gap() -> None:
    assert metrics.poll_wait_bound([]) == {"poll_wait_bound_p50_seconds": None, "poll_wait_bound_p95_seconds": None}
    gaps = [float(g) for g in range(20, 0, -1)]
    assert metrics.poll_wait_bound(gaps) == {"poll_wait_bound_p50_seconds": 11.0, "poll_wait_bound_p95_seconds": 19.0}


def test_run_metrics_keys_and_figures() -> None:
    df = pd.DataFrame({"status": ["succeeded", "succeeded", "succeeded", "failed"],
                       "reused": [False, False, True, False], "seconds": [2.0, 4.0, 100.0, 9.0]})
    results = [_Result(poll_gap=0.5), _Result(poll_gap=1.5), _Result(reused=True, poll_gap=9.0),
               _Result(status="failed", task_id=None, units=0)]
    traffic = Traffic()
    traffic.add(_snapshot(2, 2, 6))
    got = metrics.run_metrics(df, results, traffic, processing_seconds=12.34567, planner=_Planner(),
                              webhooks={"deliveries": 2})
    assert list(got) == ["processing_seconds", "requests_by_route", "requests_total", "api_requests_per_picture",
                         "http_429", "retries", "transport_errors", "latency_p50_seconds", "latency_p95_seconds",
                         "first_poll_seconds", "poll_wait_bound_p50_seconds", "poll_wait_bound_p95_seconds",
                         "done_at_first_poll", "webhooks"]
    assert got["processing_seconds"] == 12.346
    assert got["api_requests_per_picture"] == 5.0  # 10 picture requests over the 2 paid (not reused) pictures
    assert (got["latency_p50_seconds"], got["latency_p95_seconds"]) == (3.0, 3.9)  # reused and failed left out
    assert (got["first_poll_seconds"], got["done_at_first_poll"]) == (7.123, 0.25)
    assert (got["poll_wait_bound_p50_seconds"], got["poll_wait_bound_p95_seconds"]) == (1.5, 0.5)
    assert got["webhooks"] == {"deliveries": 2}


def test_run_metrics_without_paid_pictures_or_a_planner() -> None:
    df = pd.DataFrame({"status": ["failed"], "reused": [False], "seconds": [None]})
    got = metrics.run_metrics(df, [_Result(status="failed")], Traffic(), processing_seconds=0.0, planner=None,
                              webhooks=None)
    assert got["api_requests_per_picture"] is None and got["requests_by_route"] == {}
    assert got["latency_p50_seconds"] is None and got["first_poll_seconds"] is None
    assert got["done_at_first_poll"] is None


def test_dry_run_estimate_charges_the_rows_it_would_create() -> None:
    results = [_Result(error_code="dry_run"), _Result(error_code="dry_run"), _Result(error_code="prompt_missing")]
    assert metrics.dry_run_estimate(results, units_per_task=4, unit_price=0.0333) == {
        "estimated_units": 8, "estimated_cost": 0.2664}


def test_charged_task_ids_and_vendor_figures() -> None:
    results = [_Result(task_id="b"), _Result(task_id="a"), _Result(task_id="b"), _Result(task_id="c", units=0)]
    assert metrics.charged_task_ids(results) == ["a", "b"]
    assert metrics.vendor_figures(None, 8) == {"vendor_units": None, "units_difference": None}
    assert metrics.vendor_figures(12.0, 8) == {"vendor_units": 12.0, "units_difference": 4.0}
