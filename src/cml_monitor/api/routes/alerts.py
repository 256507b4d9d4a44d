"""`/api/alerts`, `/api/silences`, `/api/notifications`: alert state, muting, and the outbox."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status

from cml_monitor.domain import Alert, Silence

from ..deps import AlertingDep
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

router = APIRouter(prefix="/api", tags=["alerts"])
NOT_FOUND = {404: {"description": "unknown id"}}


def _alert_out(alert: Alert) -> AlertOut:
    data = asdict(alert)
    data.pop("violations")
    data.pop("updated_at")
    return AlertOut(**data, severity=alert.severity)


def _silence_out(silence: Silence, alerting: AlertingDep) -> SilenceOut:
    return SilenceOut(**asdict(silence), active=silence.active(alerting.now()))


@router.get("/alerts", response_model=AlertList)
async def list_alerts(
    alerting: AlertingDep,
    state: Annotated[Literal["pending", "firing", "resolved"] | None, Query()] = None,
    kind: Annotated[AlertKindName | None, Query()] = None,
    worker_id: Annotated[str | None, Query(max_length=36, pattern=r"^[0-9a-f-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> AlertList:
    """Alerts, newest change first."""
    found = await alerting.list_alerts(state=state, worker_id=worker_id, kind=kind, limit=limit)
    return AlertList(items=[_alert_out(a) for a in found])


@router.get("/alerts/{alert_id}", response_model=AlertOut, responses=NOT_FOUND)
async def get_alert(alert_id: str, alerting: AlertingDep) -> AlertOut:
    return _alert_out(await alerting.get(alert_id))


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, responses=NOT_FOUND)
async def acknowledge_alert(
    alert_id: str, alerting: AlertingDep, request: Request, body: AckRequest | None = None
) -> AlertOut:
    """Acknowledge: the alert keeps its state but is not re-notified while it fires; who
    acknowledged (the token's subject or role) is kept in `acknowledged_by`."""
    principal = getattr(request.state, "principal", None)
    actor = principal.subject if principal else "anonymous"
    return _alert_out(await alerting.acknowledge(alert_id, body.comment if body else None, actor))


@router.post("/silences", status_code=status.HTTP_201_CREATED, response_model=SilenceOut)
async def create_silence(body: SilenceCreate, alerting: AlertingDep) -> SilenceOut:
    """Mute a worker, a kind, or a kind on a worker until `ends_at` (alerts still change state)."""
    silence = await alerting.silence(
        worker_id=body.worker_id,
        kind=body.kind,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        comment=body.comment,
    )
    return _silence_out(silence, alerting)


@router.get("/silences", response_model=SilenceList)
async def list_silences(alerting: AlertingDep, active: bool | None = None) -> SilenceList:
    found = await alerting.list_silences(active_only=bool(active))
    return SilenceList(items=[_silence_out(s, alerting) for s in found])


@router.get("/silences/{silence_id}", response_model=SilenceOut, responses=NOT_FOUND)
async def get_silence(silence_id: str, alerting: AlertingDep) -> SilenceOut:
    return _silence_out(await alerting.get_silence(silence_id), alerting)


@router.delete("/silences/{silence_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def expire_silence(silence_id: str, alerting: AlertingDep) -> Response:
    """End the silence now (it stays listed, expired)."""
    await alerting.end_silence(silence_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/notifications", response_model=NotificationList)
async def list_notifications(
    alerting: AlertingDep,
    state: Annotated[Literal["pending", "sent", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> NotificationList:
    """The outbox: what is waiting, what went out, what was dead-lettered."""
    rows = await alerting.list_notifications(state=state, limit=limit)
    return NotificationList(
        items=[NotificationOut(**{k: row[k] for k in NotificationOut.model_fields}) for row in rows]
    )
