"""Run metrics for a batch's summary: API traffic, latency quantiles, poll-wait bounds, the dry-run estimate and
the vendor's reconciliation figures. Plain arithmetic, no Prefect: the flow gathers the inputs, this computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

__all__ = ["Finished", "PlannerCounts", "Traffic", "charged_task_ids", "dry_run_estimate", "poll_wait_bound",
           "run_metrics", "vendor_figures"]

#: the routes a picture spends requests on: uploads, creates and polls (not the end-of-run credit check)
PICTURE_ROUTES = ("file", "create", "poll")


class Finished(Protocol):
    """What the metrics read of one picture's result (`backdrop.pipeline.outcomes.ItemResult`)."""

    @property
    def status(self) -> str: ...
    @property
    def reused(self) -> bool: ...
    @property
    def task_id(self) -> str | None: ...
    @property
    def units(self) -> int: ...
    @property
    def poll_gap(self) -> float | None: ...
    @property
    def error_code(self) -> str | None: ...


class PlannerCounts(Protocol):
    """What the metrics read of the run's poll planner (`backdrop.pipeline.polling.PollPlanner`)."""

    first_polls: int
    done_at_first: int

    def first_delay(self) -> float: ...


@dataclass
class Traffic:
    """Requests by route, 429s, retries and transport errors of a run's clients, summed."""

    requests: dict[str, int] = field(default_factory=dict)
    http_429: int = 0
    retries: int = 0
    transport_errors: int = 0

    def add(self, snapshot: Mapping[str, object]) -> None:
        """Add one client's counters (`ClientStats.snapshot()`)."""
        requests = snapshot["requests"]
        if isinstance(requests, Mapping):
            for route, n in requests.items():
                self.requests[str(route)] = self.requests.get(str(route), 0) + int(n)
        self.http_429 += _count(snapshot["http_429"])
        self.retries += _count(snapshot["retries"])
        self.transport_errors += _count(snapshot["transport_errors"])

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def picture_requests(self) -> int:
        """API requests spent on pictures: uploads, creates and polls (not the end-of-run credit check)."""
        return sum(int(self.requests.get(r, 0)) for r in PICTURE_ROUTES)


def _count(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"a client counter is an int, not {type(value).__name__}")
    return value


def poll_wait_bound(gaps: list[float]) -> dict[str, float | None]:
    """p50 and p95 of the most each finished task can have waited for the poll that found it done."""
    if not gaps:
        return {"poll_wait_bound_p50_seconds": None, "poll_wait_bound_p95_seconds": None}
    ordered = sorted(gaps)
    return {"poll_wait_bound_p50_seconds": round(ordered[len(ordered) // 2], 3),
            "poll_wait_bound_p95_seconds": round(ordered[int(0.95 * (len(ordered) - 1))], 3)}


def run_metrics(df: pd.DataFrame, results: Iterable[Finished], traffic: Traffic, *, processing_seconds: float,
                planner: PlannerCounts | None, webhooks: dict[str, int] | None) -> dict[str, Any]:
    """The summary's traffic, latency and polling figures, in the summary's key order."""
    finished = list(results)
    paid = sum(1 for r in finished if r.status == "succeeded" and not r.reused and r.task_id)
    latencies = df.loc[(df["status"] == "succeeded") & ~df["reused"].astype(bool), "seconds"].dropna()
    return dict(
        processing_seconds=round(processing_seconds, 3),
        requests_by_route=traffic.requests, requests_total=traffic.total,
        api_requests_per_picture=round(traffic.picture_requests() / paid, 3) if paid else None,
        http_429=traffic.http_429, retries=traffic.retries,
        transport_errors=traffic.transport_errors,
        latency_p50_seconds=round(float(latencies.quantile(0.5)), 3) if len(latencies) else None,
        latency_p95_seconds=round(float(latencies.quantile(0.95)), 3) if len(latencies) else None,
        first_poll_seconds=round(planner.first_delay(), 3) if planner else None,
        **poll_wait_bound([r.poll_gap for r in finished if r.poll_gap is not None and not r.reused]),
        done_at_first_poll=(round(planner.done_at_first / planner.first_polls, 3)
                            if planner and planner.first_polls else None),
        webhooks=webhooks,
    )


def dry_run_estimate(results: Iterable[Finished], *, units_per_task: int, unit_price: float) -> dict[str, Any]:
    """What a dry run's pictures would cost: one task each for the rows it would have created."""
    to_pay = sum(1 for r in results if r.error_code == "dry_run")
    return {"estimated_units": to_pay * units_per_task,
            "estimated_cost": round(to_pay * units_per_task * unit_price, 4)}


def charged_task_ids(results: Iterable[Finished]) -> list[str]:
    """Every task a report carries a charge for, taken-over ones of a killed run included."""
    return sorted({r.task_id for r in results if r.task_id and r.units})


def vendor_figures(vendor_units: float | None, units_charged: int) -> dict[str, Any]:
    """The vendor's units for the run's tasks and their difference from the report (None when unread)."""
    return {"vendor_units": vendor_units,
            "units_difference": None if vendor_units is None else vendor_units - units_charged}
