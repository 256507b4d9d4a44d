"""`/api/monitoring/jobs`: what is being monitored, and when each worker is collected next."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..deps import get_services
from ..schemas import MonitoringJob, MonitoringJobList
from ..services import Services

router = APIRouter(prefix="/api", tags=["monitoring"])
ServicesDep = Annotated[Services, Depends(get_services)]


@router.get("/monitoring/jobs", response_model=MonitoringJobList)
async def monitoring_jobs(services: ServicesDep) -> MonitoringJobList:
    return MonitoringJobList(items=[MonitoringJob(**job) for job in services.scheduler.monitoring_jobs()])
