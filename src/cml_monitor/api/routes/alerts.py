"""`/api/alerts`, `/api/silences`, `/api/notifications`: alert state, muting, and the outbox."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from cml_monitor.alerts.silences import Silence
from cml_monitor.alerts.state import Alert

from ..deps import get_services, load_worker
from ..schemas import (
    AckRequest,
    AlertKindName,
    AlertList,
    AlertOut,
    NotificationList,
    NotificationOut,
    SilenceCreate,
    SilenceList,
    SilenceOut,
)
from ..services import Services
from ..validation import looks_like_worker_id

router = APIRouter(prefix="/api", tags=["alerts"])
ServicesDep = Annotated[Services, Depends(get_services)]
NOT_FOUND = {404: {"description": "unknown id"}}


def _alert_out(alert: Alert) -> AlertOut:
    data = asdict(alert)
    data.pop("violations")
    data.pop("updated_at")
    return AlertOut(**data, severity=alert.severity)


def _silence_out(silence: Silence, services: Services) -> SilenceOut:
    return SilenceOut(**asdict(silence), active=silence.active(services.clock()))


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}])


@router.get("/alerts", response_model=AlertList)
async def list_alerts(
    services: ServicesDep,
    state: Annotated[Literal["pending", "firing", "resolved"] | None, Query()] = None,
    kind: Annotated[AlertKindName | None, Query()] = None,
    worker_id: Annotated[str | None, Query(max_length=36, pattern=r"^[0-9a-f-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> AlertList:
    """Alerts, newest change first."""
    found = await services.alerts.list_alerts(state=state, worker_id=worker_id, kind=kind, limit=limit)
    return AlertList(items=[_alert_out(a) for a in found])


@router.get("/alerts/{alert_id}", response_model=AlertOut, responses=NOT_FOUND)
async def get_alert(alert_id: str, services: ServicesDep) -> AlertOut:
    alert = await services.alerts.get_alert(alert_id) if looks_like_worker_id(alert_id) else None
    if alert is None:
        raise HTTPException(404, detail=f"alert {alert_id!r} not found")
    return _alert_out(alert)


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, responses=NOT_FOUND)
async def acknowledge_alert(alert_id: str, services: ServicesDep, body: AckRequest | None = None) -> AlertOut:
    """Acknowledge: the alert keeps its state but is not re-notified while it fires."""
    if not looks_like_worker_id(alert_id) or await services.alerts.get_alert(alert_id) is None:
        raise HTTPException(404, detail=f"alert {alert_id!r} not found")
    alert = await services.alerts.acknowledge(alert_id, body.comment if body else None, services.clock())
    assert alert is not None
    return _alert_out(alert)


@router.post("/silences", status_code=status.HTTP_201_CREATED, response_model=SilenceOut)
async def create_silence(body: SilenceCreate, services: ServicesDep) -> SilenceOut:
    """Mute a worker, a kind, or a kind on a worker until `ends_at` (alerts still change state)."""
    now = services.clock()
    starts_at = body.starts_at or now
    for name, value in (("starts_at", starts_at), ("ends_at", body.ends_at)):
        if value.tzinfo is None:
            raise _unprocessable(name, "needs a UTC offset (Z or +00:00)")
    if body.ends_at <= max(starts_at, now):
        raise _unprocessable("ends_at", "must be in the future and after starts_at")
    if body.worker_id is not None:
        if (
            not looks_like_worker_id(body.worker_id)
            or await services.repository.get_by_id_async(body.worker_id) is None
        ):
            raise _unprocessable("worker_id", "no such worker")
    silence = Silence(
        id=str(uuid.uuid4()),
        worker_id=body.worker_id,
        kind=body.kind,
        starts_at=starts_at,
        ends_at=body.ends_at,
        comment=body.comment,
        created_at=now,
    )
    await services.alerts.add_silence(silence)
    return _silence_out(silence, services)


@router.get("/silences", response_model=SilenceList)
async def list_silences(services: ServicesDep, active: bool | None = None) -> SilenceList:
    found = await services.alerts.list_silences(active_at=services.clock() if active else None)
    return SilenceList(items=[_silence_out(s, services) for s in found])


@router.get("/silences/{silence_id}", response_model=SilenceOut, responses=NOT_FOUND)
async def get_silence(silence_id: str, services: ServicesDep) -> SilenceOut:
    silence = await services.alerts.get_silence(silence_id) if looks_like_worker_id(silence_id) else None
    if silence is None:
        raise HTTPException(404, detail=f"silence {silence_id!r} not found")
    return _silence_out(silence, services)


@router.delete("/silences/{silence_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def expire_silence(silence_id: str, services: ServicesDep) -> Response:
    """End the silence now (it stays listed, expired)."""
    if not looks_like_worker_id(silence_id) or not await services.alerts.expire_silence(
        silence_id, services.clock()
    ):
        raise HTTPException(404, detail=f"silence {silence_id!r} not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/notifications", response_model=NotificationList)
async def list_notifications(
    services: ServicesDep,
    state: Annotated[Literal["pending", "sent", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> NotificationList:
    """The outbox: what is waiting, what went out, what was dead-lettered."""
    rows = await services.alerts.list_notifications(state=state, limit=limit)
    return NotificationList(
        items=[NotificationOut(**{k: row[k] for k in NotificationOut.model_fields}) for row in rows]
    )


__all__ = ["load_worker", "router"]
