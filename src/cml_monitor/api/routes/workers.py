"""`/api/workers`: register, list, read, edit, delete, refresh, history, import."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status

from cml_monitor.domain import Worker, WorkerStatus, worker_json
from cml_monitor.domain.actions import LOCAL
from cml_monitor.usecases import WorkerOperations

from ..deps import WorkersDep
from ..schemas import (
    Accepted,
    ActionOut,
    ActionRequest,
    ImportRequest,
    ImportResult,
    MetricList,
    MetricPoint,
    PreviewInstance,
    SkippedInstance,
    StartedLabList,
    StartedLabOut,
    Timestamp,
    WorkerCreate,
    WorkerList,
    WorkerOut,
    WorkerUpdate,
)
from ..validation import INSTANCE_ID

router = APIRouter(prefix="/api/workers", tags=["workers"])
RegionFilter = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")]
NOT_FOUND = {404: {"description": "unknown worker"}}


def _out(workers: WorkerOperations, worker: Worker, **kwargs: Any) -> WorkerOut:
    """One worker as `worker_json` builds it (the list's items and the live events' `worker`
    are built by it too), sent as it is: `WorkerOut` documents it, a test checks they agree."""
    body = json.dumps(worker_json(worker, workers.next_run_at(worker)), allow_nan=False)
    return Response(body, media_type="application/json", **kwargs)  # type: ignore[return-value]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WorkerOut)
async def register_worker(body: WorkerCreate, workers: WorkersDep) -> WorkerOut:
    """Register a worker; its monitoring starts at once. 409 if the instance is registered."""
    worker = await workers.register(
        name=body.name, aws_region=body.aws_region, aws_instance_id=body.aws_instance_id, cml_url=body.cml_url
    )
    return _out(
        workers,
        worker,
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"/api/workers/{worker.id}"},
    )


@router.get("", response_model=WorkerList)
async def list_workers(
    workers: WorkersDep,
    status_filter: Annotated[WorkerStatus | None, Query(alias="status")] = None,
    aws_region: RegionFilter = None,
    q: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    alerting: bool | None = None,
    problem: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> WorkerList:
    """Workers, oldest first. `q`: name, instance id or region contains (any case);
    `alerting=true`: an alert is firing; `problem=true`: an alert is firing, the state is
    `unknown` or `shutting-down`, or the controller of a running worker is unreachable,
    unhealthy or not ready. Filters combine."""
    items, total = await workers.list(
        status=status_filter,
        aws_region=aws_region,
        q=q,
        alerting=alerting,
        problem=problem,
        limit=limit,
        offset=offset,
    )
    # The most requested page (dashboards poll it): serialised once, straight from our own typed
    # data, rather than validated, dumped, validated again and dumped again.
    page = {"items": [worker_json(w, workers.next_run_at(w)) for w in items], "total": total}
    return Response(json.dumps(page, allow_nan=False), media_type="application/json")  # type: ignore[return-value]


@router.get("/by-instance/{instance_id}", response_model=WorkerOut, responses=NOT_FOUND)
async def get_worker_by_instance(
    instance_id: Annotated[str, Path(pattern=INSTANCE_ID.pattern)], workers: WorkersDep
) -> WorkerOut:
    """The worker watching this EC2 instance; 404 when none does."""
    return _out(workers, await workers.get_by_instance(instance_id))


@router.post("/import", response_model=ImportResult)
async def import_workers(body: ImportRequest, workers: WorkersDep) -> ImportResult:
    """Register every EC2 instance carrying all the tags that is not registered yet.

    With `"preview": true` nothing is registered: `would_import` lists what would be."""
    outcome = await workers.import_by_tags(body.aws_region, body.tags, preview=body.preview)
    return ImportResult(
        imported=[WorkerOut.model_validate(worker_json(w, workers.next_run_at(w))) for w in outcome.imported],
        skipped=[SkippedInstance(aws_instance_id=i, reason=r) for i, r in outcome.skipped],
        would_import=[
            PreviewInstance(aws_instance_id=i, name=n, state=s) for i, n, s in outcome.would_import
        ],
    )


@router.get("/{worker_id}", response_model=WorkerOut, responses=NOT_FOUND)
async def get_worker(worker_id: str, workers: WorkersDep) -> WorkerOut:
    return _out(workers, await workers.get(worker_id))


@router.patch("/{worker_id}", response_model=WorkerOut, responses=NOT_FOUND)
async def update_worker(worker_id: str, body: WorkerUpdate, workers: WorkersDep) -> WorkerOut:
    """Change the name, the controller URL or the threshold overrides (`null` clears the last three)."""
    worker = await workers.edit(worker_id, body.model_dump(include=body.model_fields_set))
    return _out(workers, worker)


@router.delete("/{worker_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_worker(worker_id: str, workers: WorkersDep) -> Response:
    """Unregister the worker: its monitoring stops and its history is deleted."""
    await workers.remove(worker_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{worker_id}/refresh", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted, responses=NOT_FOUND
)
async def refresh_worker(worker_id: str, workers: WorkersDep) -> Accepted:
    """Collect this worker now; the result arrives as usual (worker, history, events)."""
    worker = await workers.refresh(worker_id)
    return Accepted(worker_id=worker.id)


@router.post(
    "/{worker_id}/{action}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionOut,
    responses={
        **NOT_FOUND,
        409: {
            "description": "the worker's state does not allow it, another action is in flight, or "
            "(stop, reboot) its controller reports started labs and `force` is not true"
        },
        502: {"description": "AWS refused (the action is recorded as failed)"},
    },
)
async def act_on_worker(
    worker_id: str,
    action: Literal["start", "stop", "reboot"],
    workers: WorkersDep,
    request: Request,
    body: ActionRequest | None = None,
) -> ActionOut:
    """Stop, start or reboot the worker's instance (admin). The action is recorded before it is
    attempted (`GET /api/actions`), with the `reason` given at the head of its `detail`. A stop
    or reboot of a worker whose controller reports started labs is refused (409, naming how
    many labs and users) unless `force` is true. A stop asked here raises no `unexpected_stop`,
    a start snoozes auto-pause for `WORKER_AUTO_PAUSE_SNOOZE`. With authentication off the
    actor is `local`."""
    principal = getattr(request.state, "principal", None)
    body = body or ActionRequest()
    done = await workers.act(
        worker_id, action, principal.subject if principal else LOCAL, reason=body.reason, force=body.force
    )
    return ActionOut(**done.to_json())


@router.get("/{worker_id}/labs", response_model=StartedLabList, responses=NOT_FOUND)
async def worker_started_labs(worker_id: str, workers: WorkersDep) -> StartedLabList:
    """The worker's started labs, read from its controller now (title, owner): what a stop or
    a reboot would interrupt."""
    labs, error = await workers.started_labs(worker_id)
    return StartedLabList(items=[StartedLabOut(**lab.to_json()) for lab in labs], error=error)


@router.get("/{worker_id}/metrics", response_model=MetricList, responses=NOT_FOUND)
async def worker_metrics(
    worker_id: str,
    workers: WorkersDep,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    step: Annotated[int | None, Query(ge=0, le=86_400 * 7)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 2000,
) -> MetricList:
    """History of the worker, oldest first, at the resolution the range deserves.

    Without `step`: every sample up to 6 h, 5-minute averages up to 48 h, hourly averages
    beyond (raw samples are kept `WORKER_METRICS_RAW_RETENTION_HOURS`, hourly ones
    `WORKER_METRICS_RETENTION_DAYS`). `step=0` asks for every sample; aggregated points carry
    `cpu_max` and `memory_max` too. Default range: the last 24 hours.
    """
    used_step, source, points = await workers.history(worker_id, since, until, step, limit)
    return MetricList(items=[MetricPoint(**asdict(point)) for point in points], step=used_step, source=source)
