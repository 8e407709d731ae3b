"""automations.yaml: what `prefect automation create --from-file` reads, created on a real Prefect server.

Each automation is disabled until the user sets a notification block, expects exactly an event the flows emit
(flows/events.py), and its message templates name only payload fields those events carry.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import yaml
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore, EventTrigger

from flows.events import FAILURES_EVENT, OVER_BUDGET_EVENT

ROOT = Path(__file__).resolve().parents[2]
#: the payload keys each event carries (flows/change_backgrounds.py, flows/cost_report.py: BudgetStatus.as_dict)
PAYLOADS = {FAILURES_EVENT: {"rows", "failed", "pending", "not_attempted", "units_charged", "csv"},
            OVER_BUDGET_EVENT: {"period", "start", "end", "budget_units", "used_units", "days_elapsed",
                                "days_total", "projected_units", "warn_at", "share", "projected_share", "alert"}}


def _automations() -> list[AutomationCore]:
    data = yaml.safe_load((ROOT / "automations.yaml").read_text())
    return [AutomationCore.model_validate(a) for a in data["automations"]]


def test_each_automation_waits_for_a_backdrop_event_and_starts_disabled() -> None:
    automations = _automations()
    expected: set[str] = set()
    for automation in automations:
        assert not automation.enabled
        trigger = automation.trigger
        assert isinstance(trigger, EventTrigger)
        expected |= set(trigger.expect)
        [event] = trigger.expect
        for action in automation.actions:
            text = f"{getattr(action, 'subject', '')} {getattr(action, 'body', '')}"
            used = set(re.findall(r"event\.payload\.(\w+)", text))
            assert used and used <= PAYLOADS[event], used - PAYLOADS[event]
    assert expected == set(PAYLOADS)


def test_prefect_accepts_them(prefect_harness: Any) -> None:
    async def create() -> list[str]:
        async with get_client() as client:
            ids = [await client.create_automation(a) for a in _automations()]
            made = [await client.read_automation(i) for i in ids]
            for i in ids:
                await client.delete_automation(i)
        return [m.name for m in made if m is not None and not m.enabled]

    assert asyncio.run(create()) == [a.name for a in _automations()]
