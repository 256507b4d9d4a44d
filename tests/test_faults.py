"""A fault drill: the monitor's own stores fail under it, and it keeps watching.

Each case asserts nothing lost, nothing twice, nothing stuck. Redis and PostgreSQL here are
private servers the test starts, kills, stops and freezes (never the shared ones).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from cml_fleet_sim.simulator import FleetSimulator

from .conftest import REGION, Monitor
from .helpers import eventually
from .private_servers import PrivatePostgres, PrivateRedis


@pytest.fixture
def sim() -> Any:
    simulator = FleetSimulator(instant_transitions=True, seed=11)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Any:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.kill()


@pytest.fixture
def private_postgres() -> Any:
    server = PrivatePostgres().init().start()
    yield server
    try:
        server.stop()
    finally:
        server.remove()


async def _register(monitor: Monitor, sim: FleetSimulator, count: int) -> list[str]:
    ids = []
    for instance in sim.add_workers(count, with_controllers=False):
        body = {
            "name": instance.instance_id[-6:],
            "aws_region": REGION,
            "aws_instance_id": instance.instance_id,
        }
        response = await monitor.client.post("/api/workers", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def test_redis_killed_and_back_empty_monitoring_resumes_by_itself(
    sim: FleetSimulator, sqlite_url: str, private_redis: PrivateRedis, monitor: Any
) -> None:
    app = await monitor(
        sqlite_url, background_job_store_url=private_redis.url, worker_metrics_poll_interval=2
    )
    ids = await _register(app, sim, 5)
    await eventually(lambda: _all_collected(app, ids))
    assert (await app.ready())[0] == 200

    private_redis.kill()

    async def not_ready() -> bool:
        status, checks = await app.ready()
        return status == 503 and checks["job_store"].startswith("unavailable")

    await eventually(not_ready, timeout=15)
    listed = await app.client.get("/api/workers")
    assert listed.status_code == 200 and listed.json()["total"] == 5  # the API answers from the database
    private_redis.start()  # back, and empty: every job is gone
    before = {w: (await app.worker(w))["last_collected_at"] for w in ids}

    async def collecting_again() -> bool:
        workers = [await app.worker(w) for w in ids]
        return all(w["last_collected_at"] != before[w["id"]] for w in workers)

    await eventually(collecting_again, timeout=30)
    await eventually(lambda: _ready(app), timeout=15)
    jobs = (await app.client.get("/api/monitoring/jobs")).json()["items"]
    assert sorted(j["worker_id"] for j in jobs) == sorted(ids)
    assert all([(await app.worker(w))["monitoring"]["active"] for w in ids])
    alerts = (await app.client.get("/api/alerts")).json()["items"]
    assert [a for a in alerts if a["kind"] == "unreachable"] == []  # our outage, not the workers'


async def test_postgresql_stopped_answers_503_never_500_and_raises_no_unreachable(
    sim: FleetSimulator, private_postgres: PrivatePostgres, private_redis: PrivateRedis, monitor: Any
) -> None:
    app, ids = await _collected_fleet(
        monitor, sim, private_postgres, private_redis, 3, worker_metrics_poll_interval=1, database_timeout=3
    )
    private_postgres.stop()
    statuses = set()
    outage_started = time.monotonic()
    while time.monotonic() - outage_started < 5:  # longer than the 3 s unreachable window
        for path in (
            "/api/workers",
            f"/api/workers/{ids[0]}",
            "/api/alerts",
            "/api/monitoring/jobs",
            "/ready",
        ):
            statuses.add((await app.client.get(path)).status_code)
        started = time.monotonic()
        assert (await app.client.get("/health")).status_code == 200
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.2)
    assert 500 not in statuses and 503 in statuses
    private_postgres.start()
    await app.runtime.unreachable()  # right after the outage: our fault, no worker judged

    async def collected_after_outage() -> bool:
        return await _all_collected(app, ids)

    await eventually(collected_after_outage, timeout=30)
    await eventually(lambda: _ready(app), timeout=15)
    alerts = (await app.client.get("/api/alerts")).json()["items"]
    assert [a for a in alerts if a["kind"] == "unreachable"] == []


async def test_a_frozen_postgresql_costs_seconds_and_a_503_not_a_frozen_process(
    sim: FleetSimulator, private_postgres: PrivatePostgres, private_redis: PrivateRedis, monitor: Any
) -> None:
    app, _ids = await _collected_fleet(
        monitor, sim, private_postgres, private_redis, 2, worker_metrics_poll_interval=300, database_timeout=2
    )
    private_postgres.freeze()
    try:
        started = time.monotonic()
        health = await app.client.get("/health")
        metrics = await app.client.get("/metrics")
        assert health.status_code == 200 and metrics.status_code == 200
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        listed = await app.client.get("/api/workers")
        assert listed.status_code == 503
        assert time.monotonic() - started < 15.0
        status, checks = await app.ready()
        assert status == 503 and checks["database"].startswith("unavailable")
    finally:
        private_postgres.thaw()
    await eventually(lambda: _ready(app), timeout=30)
    assert (await app.client.get("/api/workers")).json()["total"] == 2


async def _collected_fleet(
    monitor: Any,
    sim: FleetSimulator,
    postgres: PrivatePostgres,
    redis: PrivateRedis,
    count: int,
    **settings: Any,
) -> tuple[Monitor, list[str]]:
    """A monitor on the private stores with `count` workers, each collected once."""
    app = await monitor(postgres.url, background_job_store_url=redis.url, **settings)
    ids = await _register(app, sim, count)
    await eventually(lambda: _all_collected(app, ids))
    return app, ids


async def _all_collected(app: Monitor, ids: list[str]) -> bool:
    try:
        workers = [await app.worker(w) for w in ids]
    except Exception:
        return False
    return all(w.get("last_collected_at") for w in workers)


async def _ready(app: Monitor) -> bool:
    return (await app.ready())[0] == 200


async def test_hung_and_huge_controllers_cost_their_own_lab_counts_not_the_regions_cycle(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, worker_metrics_poll_interval=300, cml_timeout=1.0, cml_password="cml-sim")
    hung, huge, fine = sim.add_workers(3)
    sim.set_labs(huge.instance_id, running=3000, stopped=0)
    sim.set_labs(fine.instance_id, running=2, stopped=1)
    ids = {}
    for instance in (hung, huge, fine):
        body = {
            "name": instance.instance_id[-6:],
            "aws_region": REGION,
            "aws_instance_id": instance.instance_id,
            "cml_url": sim.controller_url(instance.instance_id),
        }
        ids[instance.instance_id] = (await app.client.post("/api/workers", json=body)).json()["id"]
    await eventually(lambda: _all_collected(app, list(ids.values())))
    labs_before = (await app.worker(ids[hung.instance_id]))["active_labs_count"]
    sim.set_controller(hung.instance_id, latency=30.0)
    requests_before = sim.controllers.get(huge.instance_id).requests
    started = time.monotonic()
    run = await app.runtime.monitor.run_region(REGION)
    assert time.monotonic() - started < 5.0  # not the 30 s of the hung controller
    assert run.report is not None and len(run.report.events) == 3 and not run.report.failed
    events = {e.worker_id: e for e in run.report.events}
    hung_cml, huge_cml, fine_cml = (events[ids[i.instance_id]].cml for i in (hung, huge, fine))
    assert hung_cml is not None and hung_cml.reachable is False
    assert events[ids[hung.instance_id]].active_labs_count == labs_before  # kept, not zeroed
    # The huge one answers everything but its lab list, which is refused unread: labs unknown.
    assert huge_cml is not None and huge_cml.reachable is True and huge_cml.labs_started is None
    assert any(e.startswith("labs: 3000 labs listed") for e in huge_cml.errors)
    assert sim.controllers.get(huge.instance_id).requests - requests_before <= 4  # no 3,000 lab reads
    assert events[ids[fine.instance_id]].active_labs_count == 2
    assert fine_cml is not None and fine_cml.reachable is True and fine_cml.errors == ()


async def test_a_replica_frozen_past_its_lease_does_not_write_or_tell_an_old_cycle(
    sim: FleetSimulator, sqlite_repository: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    from cml_monitor.aws import AwsEc2Client
    from cml_monitor.storage import LeaseStore

    from .helpers import Events, build_monitoring, register

    (instance,) = sim.add_workers(1, with_controllers=False)
    worker = await register(sqlite_repository, instance.instance_id)
    sim.fleet.set_metrics(instance.instance_id, cpu=11.0)
    aws = AwsEc2Client(endpoint_url=sim.url, max_attempts=2)
    frozen, thaw = asyncio.Event(), asyncio.Event()

    class FreezesAfterReading:
        """Reads AWS, then stops as SIGSTOP would, until the test thaws it."""

        async def describe_instance_statuses(self, region: str, ids: Any) -> Any:
            result = await aws.describe_instance_statuses(region, ids)
            frozen.set()
            await thaw.wait()
            return result

        async def get_utilization(self, region: str, ids: Any) -> Any:
            return await aws.get_utilization(region, ids)

    leases = LeaseStore(sqlite_repository.engine)
    old_events, new_events = Events(), Events()
    stale = build_monitoring(
        sqlite_repository, FreezesAfterReading(), leases=leases, poll_interval=1, observers=[old_events]
    )
    later = build_monitoring(
        sqlite_repository,
        aws,
        leases=leases,
        poll_interval=1,
        observers=[new_events],
        clock=lambda: datetime.now(UTC) + timedelta(seconds=2),  # after the frozen one's lease ran out
    )
    try:
        frozen_run = asyncio.ensure_future(stale.monitor.run_region(REGION))
        await asyncio.wait_for(frozen.wait(), 10)
        sim.fleet.set_metrics(instance.instance_id, cpu=77.0)
        newer = await later.monitor.run_region(REGION)
        assert not newer.skipped and [e.cpu_utilization for e in newer.report.events] == [77.0]
        thaw.set()
        await asyncio.wait_for(frozen_run, 10)
    finally:
        await aws.close()
    stored = await sqlite_repository.get_by_id_async(worker.id)
    assert stored.cpu_utilization == 77.0  # the newer cycle stands
    assert old_events.items == []  # and the woken replica told nobody its old news
    assert [e["metrics"]["cpu_utilization"] for e in new_events.items] == [77.0]
    history = await sqlite_repository.list_metrics_async(worker.id)
    assert [h.cpu_utilization for h in history] == [77.0]
