"""`/api/events`: Server-Sent Events, an event `metrics` per collection, a heartbeat every 15 s."""

from __future__ import annotations

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from ..deps import RuntimeDep

router = APIRouter(prefix="/api", tags=["events"])
HEARTBEAT_SECONDS = 15


@router.get("/events", response_class=EventSourceResponse)
async def events(runtime: RuntimeDep) -> EventSourceResponse:
    return EventSourceResponse(runtime.live_events.subscribe(), ping=HEARTBEAT_SECONDS)
