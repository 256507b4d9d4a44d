"""`StateChangeApplier`: EC2 state changes from EventBridge applied to workers at once.

A stop behind our back is known within seconds, not at the next poll: the worker's status and
`status_changed_at` (the event's own time) are written, the observers get the event like any
other (so alerts, `unexpected_stop` included, SSE and gauges react), and the worker is
collected soon after. Polling stays the reconciliation. An event older than what the worker
shows, or a duplicate, changes nothing and tells nobody; an unknown instance is ignored.
EventBridge's `time` has whole seconds: an event in the same second as what we know applies
only when its state is further on in the lifecycle (pending, running, stopping, stopped,
shutting-down, terminated), and the next collection reconciles whatever that guessed wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol

from cml_monitor.aws.eventbridge import ScheduledChange, StateChange
from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain import Worker
from cml_monitor.domain.times import FUTURE_SKEW, believable

from .collector import metrics_event

logger = logging.getLogger(__name__)

# EventBridge stamps events to the second; within one second, the state further on wins.
LIFECYCLE = {"pending": 0, "running": 1, "stopping": 2, "stopped": 3, "shutting-down": 4, "terminated": 5}


class StateChangeStore(Protocol):
    async def get_by_instance_id_async(self, aws_instance_id: str) -> Worker | None: ...

    async def apply_state_change_async(self, worker: Worker, fence: Any, expected_status: str) -> bool: ...


class StateChangeApplier:
    def __init__(
        self,
        repository: StateChangeStore,
        publish: Callable[[list[Any]], Awaitable[None]],
        collect_soon: Callable[[str], object],
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._repository = repository
        self._publish = publish
        self._collect_soon = collect_soon
        self._clock = clock

    async def __call__(self, change: StateChange | ScheduledChange) -> str:
        if isinstance(change, ScheduledChange):
            return await self._scheduled(change)
        worker = await self._repository.get_by_instance_id_async(change.instance_id)
        if worker is None:
            return "unknown_instance"
        now = self._clock()
        if change.time > now + FUTURE_SKEW:
            # Dated ahead of every clock: what it says may be true, when it says is not. Taken
            # as now, so it never becomes a last-seen time no later event can pass.
            logger.warning(
                "EC2 event for %s dated %s, in the future: taken as now", change.instance_id, change.time
            )
            change = replace(change, time=now)
        seen = (believable(t, now) for t in (worker.last_collected_at, worker.status_changed_at))
        known = max((t for t in seen if t is not None), default=None)
        if known is not None and change.time < known.replace(microsecond=0):
            return "stale"
        if (
            known is not None
            and change.time <= known
            and LIFECYCLE.get(change.state, -1) <= LIFECYCLE.get(worker.ec2_instance_state or "", -1)
        ):
            return "stale"  # within the same second: only a state further on in the lifecycle wins
        previous = worker.update_ec2_state(
            instance_state=change.state,
            system_status=worker.ec2_system_status_check,
            instance_status=worker.ec2_instance_status_check,
            scheduled_events=worker.ec2_scheduled_events,
            now=change.time,
        )
        if worker.status is previous:
            return "stale"  # nothing new (a state we already show)
        fence = change.time + timedelta(seconds=1)
        if not await self._repository.apply_state_change_async(worker, fence, previous.value):
            return "stale"  # something newer was written meanwhile
        logger.info(
            "⚡ Worker %s (%s) is %s (EC2 event at %s)",
            worker.name,
            worker.aws_instance_id,
            change.state,
            change.time,
        )
        worker.last_collected_at = change.time  # the event's time stamps what it says
        await self._publish([metrics_event(worker, previous)])
        self._collect_soon(worker.id)
        return "applied"

    async def _scheduled(self, change: ScheduledChange) -> str:
        """AWS Health announced maintenance: collect now, the status call lists the event."""
        found = 0
        for instance_id in change.instance_ids:
            worker = await self._repository.get_by_instance_id_async(instance_id)
            if worker is not None:
                self._collect_soon(worker.id)
                found += 1
        return "applied" if found else "unknown_instance"
