"""`/api/monitoring/jobs`: what is being monitored, and when each worker is collected next."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import RuntimeDep
from ..schemas import MonitoringJob, MonitoringJobList

router = APIRouter(prefix="/api", tags=["monitoring"])


@router.get("/monitoring/jobs", response_model=MonitoringJobList)
async def monitoring_jobs(runtime: RuntimeDep) -> MonitoringJobList:
    await runtime.scheduler.refresh_view()
    return MonitoringJobList(items=[MonitoringJob(**job) for job in runtime.scheduler.monitoring_jobs()])
