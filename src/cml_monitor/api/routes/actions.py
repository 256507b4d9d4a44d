"""`/api/actions` (the audit trail of stops, starts and reboots) and `/api/fleet/summary`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import ActionsDep
from ..schemas import ActionList, ActionOut, FleetSummaryOut

router = APIRouter(tags=["actions"])


@router.get("/api/actions", response_model=ActionList)
async def list_actions(
    actions: ActionsDep,
    worker_id: Annotated[str | None, Query(max_length=36)] = None,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    result: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ActionList:
    """Every stop, start and reboot, automatic or by hand, newest first; `kind` and `result`
    narrow it (`result=failed` is what needs a look)."""
    found = await actions.list(worker_id=worker_id, kind=kind, result=result, limit=limit)
    return ActionList(items=[ActionOut(**a.to_json()) for a in found])


@router.get("/api/fleet/summary", response_model=FleetSummaryOut)
async def fleet_summary(actions: ActionsDep) -> FleetSummaryOut:
    """Workers by status, how many are idle now, and the fleet's hours running, idle and paused."""
    summary = await actions.summary()
    return FleetSummaryOut(
        workers=summary.workers,
        by_status=summary.by_status,
        idle=summary.idle,
        running_hours=summary.running_hours,
        idle_hours=summary.idle_hours,
        paused_hours=summary.paused_hours,
    )
