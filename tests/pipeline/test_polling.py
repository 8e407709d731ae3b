"""The poll planner learns the first-poll delay at which the wanted share of tasks is already done."""

from __future__ import annotations

import random

import pytest

from backdrop.pipeline.polling import PollPlanner
from backdrop.settings import BackdropSettings


def _durations(n: int, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(2.3, 0.4) for _ in range(n)]  # median ~10 s, like the vendor's tasks


@pytest.mark.parametrize("quantile", [0.5, 0.8, 0.9])
def test_adaptive_first_poll_converges_to_the_quantile(quantile: float) -> None:
    planner = PollPlanner(BackdropSettings(poll_first_seconds=3.0, poll_quantile=quantile))
    for d in _durations(3000):
        planner.observe_first_poll(done=d <= planner.first_delay())
    truth = sorted(_durations(20000, seed=99))[int(quantile * 20000)]
    assert planner.first_delay() == pytest.approx(truth, rel=0.15)


def test_running_tasks_back_off_to_the_cap() -> None:
    planner = PollPlanner(BackdropSettings(poll_first_seconds=8.0, poll_interval_seconds=2.0,
                                           poll_max_interval_seconds=30.0, poll_max_gap_seconds=60.0))
    delays, d = [], 8.0
    for _ in range(10):
        d = planner.next_delay(d)
        delays.append(d)
    assert delays == sorted(delays) and delays[-1] == 30.0 and delays[0] >= 2.0


def test_fixed_strategy_polls_like_the_vendor_sample() -> None:
    planner = PollPlanner(BackdropSettings(poll_strategy="fixed", poll_interval_seconds=2.0))
    planner.observe_first_poll(done=False)
    assert (planner.first_delay(), planner.next_delay(2.0), planner.next_delay(10.0)) == (2.0, 2.0, 2.0)
