"""`/api/events`: Server-Sent Events, an event `metrics` per collection, a heartbeat every 15 s."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sse_starlette import EventSourceResponse

from ..deps import get_services
from ..services import Services

router = APIRouter(prefix="/api", tags=["events"])
HEARTBEAT_SECONDS = 15


@router.get("/events", response_class=EventSourceResponse)
async def events(services: Annotated[Services, Depends(get_services)]) -> EventSourceResponse:
    return EventSourceResponse(services.events.subscribe(), ping=HEARTBEAT_SECONDS)
