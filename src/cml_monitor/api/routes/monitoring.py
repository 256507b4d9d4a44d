"""`/api/monitoring/*`: what is being monitored, when each worker is collected next, how fresh.

Both answer from memory: the schedule view and the collection records are refreshed in the
background, so neither waits on the job store or the database (`jobs` lists the monitored
workers from the database on an API replica).
"""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import RuntimeDep, WorkersDep
from ..schemas import CollectionStatusOut, MonitoringJob, MonitoringJobList, RegionCollectionOut

router = APIRouter(prefix="/api", tags=["monitoring"])


@router.get("/monitoring/jobs", response_model=MonitoringJobList)
async def monitoring_jobs(workers: WorkersDep) -> MonitoringJobList:
    """Every monitored worker, its region's job and next run (`stale` when the store is down)."""
    jobs, stale = await workers.monitoring_jobs()
    return MonitoringJobList(items=[MonitoringJob(**job) for job in jobs], stale=stale)


@router.get("/monitoring/collection", response_model=CollectionStatusOut)
async def collection_status(runtime: RuntimeDep) -> CollectionStatusOut:
    """Each region's last collection; `stale` lists the regions not collected for 2 intervals."""
    freshness = runtime.freshness
    return CollectionStatusOut(
        enabled=freshness.enabled,
        interval_seconds=freshness.interval_seconds,
        check=freshness.check().text,
        stale=freshness.stale(),
        regions=[RegionCollectionOut(**region) for region in freshness.regions()],
    )
