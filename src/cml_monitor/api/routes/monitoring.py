"""`/api/monitoring/jobs` and `/api/alerts`: what is monitored and what the handler saw."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from ..deps import get_services
from ..schemas import Alert, AlertList, MonitoringJob, MonitoringJobList
from ..services import Services

router = APIRouter(prefix="/api", tags=["monitoring"])
ServicesDep = Annotated[Services, Depends(get_services)]


@router.get("/monitoring/jobs", response_model=MonitoringJobList)
async def monitoring_jobs(services: ServicesDep) -> MonitoringJobList:
    return MonitoringJobList(items=[MonitoringJob(**job) for job in services.scheduler.monitoring_jobs()])


@router.get("/alerts", response_model=AlertList)
async def list_alerts(
    services: ServicesDep,
    state: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
) -> AlertList:
    """Threshold violations the notification handler has seen (newest first)."""
    if state == "resolved":
        return AlertList(items=[])
    items = []
    for seen in reversed(services.handler.recent_violations):
        digest = hashlib.sha1(f"{seen['worker_id']}:{seen['kind']}:{seen['timestamp']}".encode()).hexdigest()
        items.append(
            Alert(
                id=digest[:16],
                kind=seen["kind"],
                state="firing",
                worker_id=seen["worker_id"],
                worker_name=seen["worker_name"],
                value=seen["value"],
                threshold=seen["threshold"],
                started_at=seen["timestamp"],
                resolved_at=None,
            )
        )
    return AlertList(items=items)
