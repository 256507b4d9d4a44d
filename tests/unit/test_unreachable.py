"""The unreachable-while-we-were-blind policy, with fakes: no worker is judged for our outage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from cml_monitor.monitoring.unreachable import OwnOutages, UnreachableCheck

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


@dataclass
class Fakes:
    now: datetime = START
    running: bool = True
    schedule_error: str | None = None
    overdue: list[str] = field(default_factory=list)
    checks: int = 0
    fail: bool = False

    def overdue_regions(self, now: datetime) -> list[str]:
        return self.overdue

    async def check(self) -> int:
        self.checks += 1
        if self.fail:
            raise ConnectionError("database down")
        return 0


def checker(fakes: Fakes, outages: OwnOutages) -> UnreachableCheck:
    return UnreachableCheck(outages, fakes, fakes, fakes.check, window=WINDOW, clock=lambda: fakes.now)


async def test_workers_are_judged_only_a_whole_window_after_our_own_outage() -> None:
    fakes, outages = Fakes(), OwnOutages()
    check = checker(fakes, outages)
    check.blind_until_now()  # monitoring starts: we were not watching before
    await check()
    assert fakes.checks == 0
    fakes.now += WINDOW
    await check()
    assert fakes.checks == 1
    fakes.overdue = ["us-east-1"]  # a region's runs stopped working: our fault
    await check()
    assert (fakes.checks, outages.last_failure_at) == (1, fakes.now)
    fakes.overdue = []
    fakes.now += WINDOW - timedelta(seconds=1)
    await check()
    assert fakes.checks == 1
    fakes.now += timedelta(seconds=1)
    await check()
    assert fakes.checks == 2


async def test_a_stopped_scheduler_or_a_failed_check_counts_as_ours() -> None:
    fakes, outages = Fakes(running=False), OwnOutages()
    check = checker(fakes, outages)
    await check()
    assert (fakes.checks, outages.last_failure_at) == (0, START)
    fakes.running, fakes.fail, fakes.now = True, True, START + WINDOW
    with pytest.raises(ConnectionError):
        await check()
    assert outages.last_failure_at == START + WINDOW
