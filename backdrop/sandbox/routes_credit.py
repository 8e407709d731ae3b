"""Unit system: balance, history of charges, and the feature-cost SKU list."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import responses
from ._common import base_url, key_state
from .pages import encode_token, page_params

router = APIRouter()

_YEAR_MS = 365 * 24 * 3600 * 1000

# (description, amount, unit, task path); bg-replace's amount comes from the key's units_per_task.
_OTHER_SKUS: list[tuple[str, float, str, str]] = [
    ("AI Photo Background Change V1.0", 1, "result_image", "/s2s/v2.0/task/sod/change-background"),
    ("AI Photo Background Removal", 1, "result_image", "/s2s/v2.0/task/sod"),
    ("AI Video Background Change", 2, "second", "/s2s/v2.0/task/bg-replace-vid"),
    ("AI Skin Analysis for SD 1~4 concerns", 9, "result_image", "/s2s/v2.0/task/skin-analysis"),
    ("AI Skin Analysis for SD 5~7 concerns", 12, "result_image", "/s2s/v2.0/task/skin-analysis"),
]


@router.get("/s2s/v1.0/client/credit")
async def credit(request: Request) -> Response:
    st = key_state(request)
    balance = st.balance
    lot = {"id": st.lot_id, "type": "ApiPaygToken", "amount": balance,
           "amount_dec": float(balance), "expiry": int(time.time() * 1000) + _YEAR_MS}
    return responses.json_body({"status": 200, "results": [lot]})


@router.get("/s2s/v1.0/client/credit/history")
async def credit_history(request: Request) -> Response:
    start, size = page_params(request, max_size=30)
    st = key_state(request)
    cfg = st.config
    with st.lock:
        charges = list(st.charges)  # oldest first, as charged
    if cfg.history_order == "newest_first":
        charges.reverse()
    shift = cfg.history_timestamp_offset_s
    rows = [{
        "id": c.history_id, "timestamp": int((c.time + shift) * 1000), "action": "change_background",
        "target_id": c.task_id,
        "info": {"credits": [{"id": st.lot_id, "amount": -c.units, "amount_dec": float(-c.units)}],
                 "dst_actions": []},
    } for c in charges[start:start + size]]
    nxt = start + size
    return responses.json_body({"status": 200, "result": {
        "next_token": encode_token(nxt) if nxt < len(charges) else None, "history": rows}})


@router.get("/s2s/v2.0/credit/feature-cost")
async def feature_cost(request: Request) -> Response:
    start, size = page_params(request, max_size=20)
    st, base = key_state(request), base_url(request)
    listed = st.config.feature_cost_slugs

    def sku(description: str, slug: str) -> dict[str, object]:
        return {"description": description, "amount": st.config.units_per_task, "unit": "result_image",
                "proc_unit": 1, "run_task_url": f"{base}/s2s/v2.0/task/{slug}"}

    # bg-replace first, as live; bg-replace-v2 (never seen live: an invented description) last, past page one
    skus = [sku("AI Photo Background Change V2.0", "bg-replace")] if listed in ("bg-replace", "both") else []
    skus += [{"description": d, "amount": a, "unit": u, "proc_unit": 1, "run_task_url": base + p}
             for d, a, u, p in _OTHER_SKUS]
    if listed in ("bg-replace-v2", "both"):
        skus.append(sku("AI Photo Background Change", "bg-replace-v2"))
    nxt = start + size
    return responses.json_body({"status": 200, "result": {
        "next_token": encode_token(nxt) if nxt < len(skus) else None,
        "skus": skus[start:start + size]}})
