"""Idle workers: when a running CML worker has nobody using it, and what that has cost.

A worker is idle when it runs, its controller answers, no lab is started, nobody has been
active on the controller for the idle timeout (counted from the latest of: the last user
activity, the moment it was last seen starting, the moment its monitoring began) and its CPU
is under the idle floor. An activity dated more than a few minutes ahead of our clock is not
believed. A worker without a controller URL is never idle: we cannot know.
Pure: the collector applies it with the policy from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from .times import believable, from_iso, to_iso


@dataclass(frozen=True, slots=True)
class IdlePolicy:
    timeout: timedelta = timedelta(hours=1)
    cpu_threshold: float = 10.0
    grace: timedelta = timedelta(minutes=10)
    snooze: timedelta = timedelta(hours=1)
    auto_pause: bool = False  # the fleet setting; each worker has its own switch too
    max_gap: timedelta = timedelta(minutes=10)  # longer between collections is not counted


@dataclass(frozen=True, slots=True)
class IdleState:
    idle: bool = False
    idle_since: datetime | None = None
    last_user_activity_at: datetime | None = None
    pause_at: datetime | None = None
    snoozed_until: datetime | None = None
    paused_by_us: bool = False  # stopped by auto-pause and not started since
    running_seconds: float = 0.0
    idle_seconds: float = 0.0
    paused_seconds: float = 0.0
    notice_id: str | None = None  # the CML system notice posted when the grace started

    def snoozed(self, now: datetime) -> bool:
        return self.snoozed_until is not None and now < self.snoozed_until

    def snooze(self, now: datetime, policy: IdlePolicy) -> IdleState:
        """Started by hand: not auto-paused for the snooze time."""
        return replace(self, snoozed_until=now + policy.snooze, paused_by_us=False, pause_at=None)

    def to_json(self) -> dict[str, Any]:
        # Written out: called twice per worker per cycle, and a loop over the fields cost 10x this.
        return {
            "idle": self.idle,
            "idle_since": to_iso(self.idle_since),
            "last_user_activity_at": to_iso(self.last_user_activity_at),
            "pause_at": to_iso(self.pause_at),
            "snoozed_until": to_iso(self.snoozed_until),
            "paused_by_us": self.paused_by_us,
            "running_seconds": self.running_seconds,
            "idle_seconds": self.idle_seconds,
            "paused_seconds": self.paused_seconds,
            "notice_id": self.notice_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> IdleState:
        if not data:
            return cls()
        values = {name: data[name] for name in _NAMES if name in data}
        for name in _TIMES & values.keys():
            values[name] = from_iso(values[name])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class IdleFacts:
    """What the rule needs to know of the worker at this collection."""

    running: bool
    has_controller: bool
    controller_reachable: bool
    labs_started: int | None
    cpu_utilization: float | None
    last_user_activity_at: datetime | None
    started_at: datetime | None  # when it was last seen starting
    monitored_since: datetime


def next_idle_state(
    state: IdleState,
    facts: IdleFacts,
    *,
    now: datetime,
    previous_collection: datetime | None,
    policy: IdlePolicy,
    auto_pause: bool,
) -> IdleState:
    """The idle state after this collection, with the time since the last one accounted."""
    elapsed = 0.0
    if previous_collection is not None and now > previous_collection:
        elapsed = min((now - previous_collection).total_seconds(), policy.max_gap.total_seconds())
    usage = {
        "running_seconds": state.running_seconds + (elapsed if facts.running else 0.0),
        "idle_seconds": state.idle_seconds + (elapsed if state.idle and facts.running else 0.0),
        "paused_seconds": state.paused_seconds
        + (elapsed if state.paused_by_us and not facts.running else 0.0),
    }
    if facts.running and state.paused_by_us:
        state = state.snooze(now, policy)  # seen running after we stopped it: started by hand
    # A date in the future (a controller's clock, or an event dated 9999 stored before it was
    # refused) is no activity: believed, it would keep the worker from ever being idle.
    last_activity = believable(facts.last_user_activity_at, now) or believable(
        state.last_user_activity_at, now
    )
    started_at = believable(facts.started_at, now)
    quiet_from = max(t for t in (last_activity, started_at, facts.monitored_since) if t is not None)
    idle = (
        facts.running
        and facts.has_controller
        and facts.controller_reachable
        and facts.labs_started == 0
        and facts.cpu_utilization is not None
        and facts.cpu_utilization < policy.cpu_threshold
        and now - quiet_from >= policy.timeout
    )
    idle_since = (state.idle_since or now) if idle else None
    pausing = idle and policy.auto_pause and auto_pause and not state.snoozed(now)
    return replace(
        state,
        idle=idle,
        idle_since=idle_since,
        last_user_activity_at=last_activity,
        pause_at=idle_since + policy.grace if pausing and idle_since else None,
        **usage,
    )


_NAMES = tuple(f.name for f in fields(IdleState))
_TIMES = frozenset({"idle_since", "last_user_activity_at", "pause_at", "snoozed_until"})
