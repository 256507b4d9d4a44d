"""`/api/workers`: register, list, read, edit, delete, refresh, history, import."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from cml_monitor.aws import AwsError
from cml_monitor.domain import Worker, WorkerStatus
from cml_monitor.storage import DuplicateWorkerError

from ..deps import get_services, load_worker
from ..schemas import (
    Accepted,
    ImportRequest,
    ImportResult,
    MetricList,
    MetricPoint,
    PowerResult,
    SkippedInstance,
    WorkerCreate,
    WorkerList,
    WorkerOut,
    WorkerUpdate,
)
from ..services import Services

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/workers", tags=["workers"])
ServicesDep = Annotated[Services, Depends(get_services)]
RegionFilter = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")]


def _out(services: Services, worker: Worker) -> WorkerOut:
    return WorkerOut.from_worker(
        worker, None if worker.is_terminated else services.scheduler.next_run_at(worker.id, worker.aws_region)
    )


async def _register(services: Services, worker: Worker) -> Worker:
    await services.repository.add_async(worker)
    if services.settings.worker_monitoring_enabled:
        await services.scheduler.start_monitoring_worker_async(worker.id)
    logger.info("Registered worker %s (%s in %s)", worker.id, worker.aws_instance_id, worker.aws_region)
    return worker


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WorkerOut)
async def register_worker(body: WorkerCreate, services: ServicesDep, response: Response) -> WorkerOut:
    """Register a worker; its monitoring starts at once. 409 if the instance is registered."""
    worker = Worker.register(
        name=body.name,
        aws_region=body.aws_region,
        aws_instance_id=body.aws_instance_id,
        cml_url=body.cml_url,
        now=services.clock(),
    )
    try:
        await _register(services, worker)
    except DuplicateWorkerError:
        raise HTTPException(
            409, detail=f"aws_instance_id: instance {body.aws_instance_id} is already registered"
        ) from None
    response.headers["Location"] = f"/api/workers/{worker.id}"
    return _out(services, worker)


@router.get("", response_model=WorkerList)
async def list_workers(
    services: ServicesDep,
    status_filter: Annotated[WorkerStatus | None, Query(alias="status")] = None,
    aws_region: RegionFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> WorkerList:
    items, total = await services.repository.list_async(
        status=status_filter, aws_region=aws_region, limit=limit, offset=offset
    )
    return WorkerList(items=[_out(services, w) for w in items], total=total)


@router.post("/import", response_model=ImportResult)
async def import_workers(body: ImportRequest, services: ServicesDep) -> ImportResult:
    """Register every EC2 instance carrying all the tags that is not registered yet."""
    try:
        instances = await services.aws.describe_instances_by_tags(body.aws_region, body.tags)
    except AwsError as exc:
        logger.error("Import from %s failed: %s", body.aws_region, exc)
        raise HTTPException(502, detail=f"AWS could not list instances in {body.aws_region}: {exc}") from None
    imported: list[WorkerOut] = []
    skipped: list[SkippedInstance] = []
    for instance in instances:
        instance_id = instance["instance_id"]
        if await services.repository.get_by_instance_id_async(instance_id) is not None:
            skipped.append(SkippedInstance(aws_instance_id=instance_id, reason="already registered"))
            continue
        name = (instance.get("name") or instance_id)[:128]
        worker = Worker.register(
            name=name if name.isprintable() and name.strip() else instance_id,
            aws_region=body.aws_region,
            aws_instance_id=instance_id,
            now=services.clock(),
        )
        try:
            await _register(services, worker)
        except DuplicateWorkerError:
            skipped.append(SkippedInstance(aws_instance_id=instance_id, reason="already registered"))
            continue
        imported.append(_out(services, worker))
    return ImportResult(imported=imported, skipped=skipped)


@router.get("/{worker_id}", response_model=WorkerOut, responses={404: {"description": "unknown worker"}})
async def get_worker(worker_id: str, services: ServicesDep) -> WorkerOut:
    return _out(services, await load_worker(services, worker_id))


@router.patch("/{worker_id}", response_model=WorkerOut, responses={404: {"description": "unknown worker"}})
async def update_worker(worker_id: str, body: WorkerUpdate, services: ServicesDep) -> WorkerOut:
    """Change the name, the controller URL or the threshold overrides (`null` clears the last three)."""
    changes = body.model_dump(include=body.model_fields_set)
    if "name" in changes and changes["name"] is None:
        raise HTTPException(
            422, detail=[{"loc": ["body", "name"], "msg": "name cannot be null", "type": "value_error"}]
        )
    worker = await load_worker(services, worker_id)
    if changes:
        worker.edit(now=services.clock(), **changes)
        await services.repository.update_async(worker)
    return _out(services, worker)


@router.delete(
    "/{worker_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "unknown worker"}}
)
async def delete_worker(worker_id: str, services: ServicesDep) -> Response:
    """Unregister the worker: its monitoring stops and its history is deleted."""
    worker = await load_worker(services, worker_id)
    await services.scheduler.stop_monitoring_worker_async(worker.id)
    await services.repository.remove_async(worker.id)
    services.metrics.forget(worker.id)
    logger.info("Unregistered worker %s", worker.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{worker_id}/refresh",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={404: {"description": "unknown worker"}},
)
async def refresh_worker(worker_id: str, services: ServicesDep) -> Accepted:
    """Collect this worker now; the result arrives as usual (worker, history, events)."""
    worker = await load_worker(services, worker_id)
    services.spawn(services.scheduler.refresh_worker_async(worker.id))
    return Accepted(worker_id=worker.id)


@router.post(
    "/{worker_id}/{action}",
    response_model=PowerResult,
    responses={404: {"description": "unknown worker"}, 502: {"description": "AWS refused"}},
)
async def power_worker(
    worker_id: str, action: Literal["start", "stop"], services: ServicesDep
) -> PowerResult:
    """Start or stop the worker's instance. A stop asked for here raises no `unexpected_stop`."""
    worker = await load_worker(services, worker_id)
    if action == "stop":
        worker.stop_requested_at = services.clock()
        await services.repository.update_async(worker)
    try:
        state = await services.aws.change_instance_state(worker.aws_region, worker.aws_instance_id, action)
    except AwsError as exc:
        raise HTTPException(502, detail=f"AWS refused to {action} {worker.aws_instance_id}: {exc}") from None
    if action == "start":
        worker.stop_requested_at = None
        await services.repository.update_async(worker)
    services.spawn(services.scheduler.refresh_worker_async(worker.id))
    return PowerResult(worker_id=worker.id, ec2_instance_state=state)


@router.get(
    "/{worker_id}/metrics", response_model=MetricList, responses={404: {"description": "unknown worker"}}
)
async def worker_metrics(
    worker_id: str,
    services: ServicesDep,
    since: datetime | None = None,
    until: datetime | None = None,
    step: Annotated[int | None, Query(ge=0, le=86_400 * 7)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 2000,
) -> MetricList:
    """History of the worker, oldest first, at the resolution the range deserves.

    Without `step`: every sample up to 6 h, 5-minute averages up to 48 h, hourly averages
    beyond (raw samples are kept `WORKER_METRICS_RAW_RETENTION_HOURS`, hourly ones
    `WORKER_METRICS_RETENTION_DAYS`). `step=0` asks for every sample; aggregated points carry
    `cpu_max` and `memory_max` too. Default range: the last 24 hours.
    """
    worker = await load_worker(services, worker_id)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(
                422,
                detail=[
                    {"loc": ["query", name], "msg": "needs a UTC offset (Z or +00:00)", "type": "value_error"}
                ],
            )
    until = until or services.clock()
    since = since or until - timedelta(hours=24)
    if since > until:
        raise HTTPException(
            422, detail=[{"loc": ["query", "since"], "msg": "must not be after until", "type": "value_error"}]
        )
    used_step, source, points = await services.history.series(worker.id, since, until, step, limit)
    return MetricList(items=[MetricPoint(**asdict(point)) for point in points], step=used_step, source=source)
