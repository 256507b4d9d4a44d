"""Leases on both databases, and a region job that skips while another replica holds it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cml_monitor.storage import CMLWorkerRepository, LeaseStore

from .conftest import REGION, Moto
from .helpers import build_monitoring, register

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


async def test_one_holder_at_a_time_until_expiry(repository: CMLWorkerRepository) -> None:
    leases = LeaseStore(repository.engine)
    ttl = timedelta(seconds=240)
    assert await leases.acquire("collect:us-east-1", "a", NOW, ttl) is True
    assert await leases.acquire("collect:us-east-1", "b", NOW + timedelta(seconds=10), ttl) is False
    assert await leases.acquire("collect:us-east-1", "a", NOW + timedelta(seconds=10), ttl) is True  # renew
    assert await leases.acquire("collect:eu-west-1", "b", NOW, ttl) is True  # another region
    assert (
        await leases.acquire("collect:us-east-1", "b", NOW + timedelta(seconds=300), ttl) is True
    )  # expired


async def test_racing_replicas_get_one_lease(repository: CMLWorkerRepository) -> None:
    leases = LeaseStore(repository.engine)
    outcomes = await asyncio.gather(
        *(leases.acquire("collect:race", f"replica-{n}", NOW, timedelta(seconds=60)) for n in range(5))
    )
    assert sorted(outcomes) == [False, False, False, False, True]


async def test_a_region_held_elsewhere_is_skipped(
    moto: Moto,
    sqlite_repository: CMLWorkerRepository,
    aws,  # type: ignore[no-untyped-def]
) -> None:
    worker = await register(sqlite_repository, moto.run_instances(1)[0])
    leases = LeaseStore(sqlite_repository.engine)
    monitor = build_monitoring(sqlite_repository, aws, leases=leases, poll_interval=300).monitor
    assert await leases.acquire(
        f"collect:{REGION}", "other-replica", datetime.now(UTC), timedelta(seconds=240)
    )
    run = await monitor.run_region(REGION)
    assert run.skipped and run.report is None
    assert (await sqlite_repository.get_by_id_async(worker.id)).last_collected_at is None
    fresh = build_monitoring(
        sqlite_repository,
        aws,
        leases=leases,
        poll_interval=300,
        clock=lambda: datetime.now(UTC) + timedelta(seconds=241),
    )
    run = await fresh.monitor.run_region(REGION)
    assert not run.skipped and run.workers == 1
    assert [e.worker_id for e in run.report.events] == [worker.id]
