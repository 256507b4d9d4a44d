"""`/api/events`: Server-Sent Events, an event `metrics` per collection, a heartbeat every 15 s.

Every stream opens with a `resync` event: a client that reconnects (after a network cut, a
restart, or being dropped for not reading) reloads the fleet rather than miss what changed
while it was away.
"""

from __future__ import annotations

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from cml_monitor.live_events import frame

from ..deps import RuntimeDep

router = APIRouter(prefix="/api", tags=["events"])
HEARTBEAT_SECONDS = 15
CONNECTED = frame("resync", {"dropped": 0, "reason": "connected"})


@router.get("/events", response_class=EventSourceResponse)
async def events(runtime: RuntimeDep) -> EventSourceResponse:
    return EventSourceResponse(runtime.live_events.subscribe(greeting=CONNECTED), ping=HEARTBEAT_SECONDS)
