"""`/api/actions` (the audit trail of stops, starts and reboots) and `/api/fleet/summary`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import ActionsDep, RuntimeDep
from ..schemas import ActionList, ActionOut, FleetPolicy, FleetSummaryOut

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
async def fleet_summary(actions: ActionsDep, runtime: RuntimeDep) -> FleetSummaryOut:
    """Workers by status, how many are idle now, the fleet's hours running, idle and paused, and
    the fleet-wide thresholds and automation switches (a worker's own thresholds override the
    first two)."""
    summary = await actions.summary()
    settings = runtime.settings
    return FleetSummaryOut(
        workers=summary.workers,
        by_status=summary.by_status,
        idle=summary.idle,
        running_hours=summary.running_hours,
        idle_hours=summary.idle_hours,
        paused_hours=summary.paused_hours,
        policy=FleetPolicy(
            cpu_threshold=settings.worker_cpu_threshold,
            memory_threshold=settings.worker_memory_threshold,
            disk_threshold=settings.worker_disk_threshold,
            auto_pause_enabled=settings.worker_auto_pause_enabled,
            auto_pause_dry_run=settings.worker_auto_pause_dry_run,
            remediation_enabled=settings.worker_remediation_enabled,
        ),
    )
