"""Readiness as typed checks: `Check(name, state, detail)`, and the probes `/ready` runs.

Each part says how it is (`ok`, `disabled`, `degraded`: said but the service still does its
job, `failing`: not ready), and the one word or sentence `/ready` shows for it. Whether the
replica is ready is decided from the states, never by reading the sentences.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


class CheckState(Enum):
    OK = "ok"
    DISABLED = "disabled"
    DEGRADED = "degraded"  # said, not fatal: e.g. polling goes on without the events queue
    FAILING = "failing"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    state: CheckState
    detail: str | None = None  # what `/ready` says when the state is not ok or disabled

    @classmethod
    def ok(cls, name: str) -> Check:
        return cls(name, CheckState.OK)

    @classmethod
    def disabled(cls, name: str) -> Check:
        return cls(name, CheckState.DISABLED)

    @classmethod
    def failing(cls, name: str, detail: str) -> Check:
        return cls(name, CheckState.FAILING, detail)

    @classmethod
    def degraded(cls, name: str, detail: str) -> Check:
        """`detail` reads as `/ready` shows it, starting with "degraded"."""
        return cls(name, CheckState.DEGRADED, detail)

    @property
    def text(self) -> str:
        """What `/ready` shows for this check."""
        if self.state in (CheckState.OK, CheckState.DISABLED) or self.detail is None:
            return self.state.value
        return self.detail

    @property
    def healthy(self) -> bool:
        return self.state is not CheckState.FAILING


def all_healthy(checks: Iterable[Check]) -> bool:
    return all(check.healthy for check in checks)


async def probe(name: str, call: Callable[[], Awaitable[object]], timeout: float = 3.0) -> Check:
    """Call something that touches a dependency, with its own deadline; never raises.

    Not `wait_for`: it waits for the cancelled call to wind down, and a driver talking to a
    frozen server may take its own timeout to do so.
    """
    task = asyncio.ensure_future(call())
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return Check.failing(name, "unavailable: TimeoutError")
    if (exc := task.exception()) is not None:
        return Check.failing(name, f"unavailable: {type(exc).__name__}")
    return Check.ok(name)


class Reports(Protocol):
    """A part that says what is wrong with it, or None (the events queue, the event bus)."""

    @property
    def problem(self) -> str | None: ...


class Schedule(Protocol):
    @property
    def running(self) -> bool: ...

    async def check_job_store(self, timeout: float = 3.0) -> None: ...

    def schedule_problem(self) -> str | None: ...


class Readiness:
    """Every dependency's check. The probes that touch something (database, job store) run side
    by side, each with its own 3 s deadline, and the rest is read from memory: `/ready` answers
    within 5 s whatever hangs."""

    def __init__(
        self,
        database: AsyncEngine,
        collection: Callable[[], Check],
        *,
        schedule: Schedule | None,
        events_queue: Reports | None,
        bus: Reports | None,
    ) -> None:
        self._database = database
        self._collection = collection
        self._schedule = schedule  # None where this replica schedules nothing
        self._events_queue = events_queue  # None where this replica does not consume it
        self._bus = bus

    async def _select_one(self) -> None:
        async with self._database.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def checks(self) -> list[Check]:
        schedule = self._schedule
        probes = [probe("database", self._select_one)]
        if schedule is not None:
            probes.append(probe("job_store", schedule.check_job_store))
        database, *job_store = await asyncio.gather(*probes)
        checks = [database, self._collection()]
        if self._events_queue is not None:
            problem = self._events_queue.problem
            checks.append(
                Check.ok("events_queue")
                if problem is None
                else Check.degraded("events_queue", f"degraded (polling goes on): {problem}")
            )
        if self._bus is not None:
            problem = self._bus.problem
            checks.append(Check.ok("event_bus") if problem is None else Check.failing("event_bus", problem))
        if schedule is None:
            return [*checks, Check.disabled("job_store")]
        checks.append(job_store[0])
        if not schedule.running:
            checks.append(Check.failing("scheduler", "stopped"))
        elif database.healthy and job_store[0].healthy:
            problem = schedule.schedule_problem()
            checks.append(
                Check.ok("schedule")
                if problem is None
                else Check.failing("schedule", f"out of date: {problem}")
            )
        return checks
