"""`/api/events`: Server-Sent Events, an event `metrics` per collection, a heartbeat every 15 s.

`?shape=event` (the default) sends each collection's event JSON; `?shape=worker` (the
dashboard's) sends the worker as `GET /api/workers/{id}` answers it.

Every stream opens with a `resync` event: a client that reconnects (after a network cut, a
restart, or being dropped for not reading) reloads the fleet rather than miss what changed
while it was away.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from sse_starlette import EventSourceResponse

from cml_monitor.live_events import frame

from ..deps import RuntimeDep

router = APIRouter(prefix="/api", tags=["events"])
HEARTBEAT_SECONDS = 15
CONNECTED = frame("resync", {"dropped": 0, "reason": "connected"})


@router.get("/events", response_class=EventSourceResponse)
async def events(
    runtime: RuntimeDep,
    shape: Literal["event", "worker"] = Query(
        "event",
        description="`event`: each collection's event JSON; `worker`: the worker as "
        "`GET /api/workers/{id}` answers it",
    ),
) -> EventSourceResponse:
    stream = runtime.live_events.subscribe(greeting=CONNECTED, shape=shape)
    return EventSourceResponse(stream, ping=HEARTBEAT_SECONDS)
