"""Never silent: the monitor says when it stops watching, on every replica and to the outside.

A region whose collection keeps failing raises `collection_failing` (fleet-level) and turns the
heartbeat into `/fail`; every replica (API replicas too) exports the last collection and says in
`/ready` when a region is stale; and no request waits on a job store that hangs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cml_fleet_sim.serving import ThreadedServer
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.domain.collections import RegionOutcome
from cml_monitor.monitoring.heartbeat import Heartbeat

from .conftest import REGION, Monitor, make_settings
from .helpers import Receiver, eventually
from .private_servers import PrivateRedis


class Checker:
    """An outside dead-man's-switch service (healthchecks.io style): records each GET."""

    def __init__(self) -> None:
        self.pings: list[str] = []
        self.answer = 200
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET"])])

    async def handle(self, request: Request) -> Response:
        self.pings.append(request.url.path)
        return Response(status_code=self.answer)


@pytest.fixture
def checker() -> Any:
    recording = Checker()
    server = ThreadedServer(recording.app).start()
    yield recording, server.url
    server.stop()


@pytest.fixture
def receiver() -> Any:
    recording = Receiver()
    server = ThreadedServer(recording.app).start()
    yield recording, server.url
    server.stop()


@pytest.fixture
def sim() -> Any:
    simulator = FleetSimulator(instant_transitions=True, seed=21)
    simulator.start()
    yield simulator
    simulator.stop()


async def _register(client: httpx.AsyncClient, sim: FleetSimulator, count: int) -> list[str]:
    ids = []
    for instance in sim.add_workers(count, with_controllers=False):
        body = {
            "name": instance.instance_id[-6:],
            "aws_region": REGION,
            "aws_instance_id": instance.instance_id,
        }
        response = await client.post("/api/workers", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def _alerts(app: Monitor, kind: str) -> list[dict[str, Any]]:
    return [a for a in (await app.client.get("/api/alerts")).json()["items"] if a["kind"] == kind]


async def test_a_failing_region_raises_collection_failing_pings_fail_and_resolves(
    sim: FleetSimulator, sqlite_url: str, monitor: Any, checker: Any, receiver: Any
) -> None:
    pings, checker_url = checker
    webhook, webhook_url = receiver
    app = await monitor(
        sqlite_url,
        worker_metrics_poll_interval=1,
        aws_max_attempts=1,
        cml_monitor_heartbeat_url=f"{checker_url}/ping/abc",
        worker_notification_webhooks=f"{webhook_url}/hook",
    )
    await _register(app.client, sim, 2)
    await eventually(lambda: "/ping/abc" in pings.pings)
    status, checks = await app.ready()
    assert status == 200 and checks["collection"] == "ok"

    sim.set_faults(error_rate=1.0)  # every AWS call of the region fails: AccessDenied, expired keys…

    async def firing() -> bool:
        return any(a["state"] == "firing" for a in await _alerts(app, "collection_failing"))

    await eventually(firing, timeout=30)
    (alert,) = await _alerts(app, "collection_failing")
    assert alert["worker_id"] is None and alert["region"] == REGION
    assert alert["severity"] == "critical" and "AWS" in alert["detail"]
    assert "/ping/abc/fail" in pings.pings
    await eventually(
        lambda: any(r["json"]["alert"]["kind"] == "collection_failing" for r in webhook.of("/hook"))
    )
    (told,) = [r["json"] for r in webhook.of("/hook") if r["json"]["alert"]["kind"] == "collection_failing"]
    assert told["type"] == "alert.firing" and told["worker"] is None
    assert told["alert"]["region"] == REGION

    async def stale_but_serving() -> bool:
        status, checks = await app.ready()
        return status == 200 and checks["collection"].startswith(f"degraded (stale: {REGION} last collected")

    await eventually(stale_but_serving, timeout=15)
    banner = (await app.client.get("/api/monitoring/collection")).json()
    assert banner["stale"] and banner["stale"][0].startswith(REGION)
    (region,) = banner["regions"]
    assert region["consecutive_failures"] >= 2 and "AWS" in region["last_error"]

    sim.set_faults(error_rate=0.0)

    async def resolved() -> bool:
        return all(a["state"] == "resolved" for a in await _alerts(app, "collection_failing"))

    await eventually(resolved, timeout=30)
    failed_at = max(i for i, p in enumerate(pings.pings) if p.endswith("/fail"))
    await eventually(lambda: "/ping/abc" in pings.pings[failed_at + 1 :])  # recovery said at once
    await eventually(lambda: any(r["json"]["type"] == "alert.resolved" for r in webhook.of("/hook")))
    status, checks = await app.ready()
    assert status == 200 and checks["collection"] == "ok"


async def test_a_collection_failing_alert_is_silenced_by_kind(
    sim: FleetSimulator, sqlite_url: str, monitor: Any, receiver: Any
) -> None:
    webhook, webhook_url = receiver
    app = await monitor(
        sqlite_url,
        worker_metrics_poll_interval=1,
        aws_max_attempts=1,
        worker_notification_webhooks=f"{webhook_url}/hook",
    )
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = await app.client.post(
        "/api/silences", json={"kind": "collection_failing", "ends_at": ends, "comment": "IAM change"}
    )
    assert created.status_code == 201, created.text
    await _register(app.client, sim, 1)
    sim.set_faults(error_rate=1.0)

    async def firing() -> bool:
        return any(a["state"] == "firing" for a in await _alerts(app, "collection_failing"))

    await eventually(firing, timeout=30)
    assert [
        r for r in webhook.requests if r["json"].get("alert", {}).get("kind") == "collection_failing"
    ] == []


async def test_an_api_replica_knows_what_collectors_do_and_when_they_stop(
    sim: FleetSimulator, tmp_path: Path
) -> None:
    from cml_monitor.api.app import create_app

    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    async with AsyncExitStack() as api_stack:
        collector_stack = AsyncExitStack()
        collector = create_app(
            make_settings(url, sim.url, cml_monitor_role="collector", worker_metrics_poll_interval=1)
        )
        await collector_stack.enter_async_context(collector.router.lifespan_context(collector))
        api = create_app(make_settings(url, sim.url, cml_monitor_role="api", worker_metrics_poll_interval=1))
        await api_stack.enter_async_context(api.router.lifespan_context(api))
        client = await api_stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api")
        )
        (worker_id,) = await _register(client, sim, 1)

        async def watched() -> bool:
            worker = (await client.get(f"/api/workers/{worker_id}")).json()
            return worker["last_collected_at"] is not None and worker["monitoring"]["next_run_at"] is not None

        await eventually(watched, timeout=20)
        worker = (await client.get(f"/api/workers/{worker_id}")).json()
        assert worker["monitoring"]["active"] is True
        jobs = (await client.get("/api/monitoring/jobs")).json()["items"]
        assert [(j["worker_id"], j["job_id"]) for j in jobs] == [(worker_id, f"fleet-metrics:{REGION}")]
        exposition = (await client.get("/metrics")).text
        assert f'cml_monitor_last_collection_timestamp_seconds{{region="{REGION}"}}' in exposition
        checks = (await client.get("/ready")).json()["checks"]
        assert checks["collection"] == "ok"

        await collector_stack.aclose()  # every collector is gone

        async def stale() -> bool:
            response = await client.get("/ready")
            collection = response.json()["checks"]["collection"]
            return response.status_code == 200 and collection.startswith(f"degraded (stale: {REGION}")

        await eventually(stale, timeout=15)
        worker = (await client.get(f"/api/workers/{worker_id}")).json()
        assert worker["monitoring"]["next_run_at"] is None  # not pretending anyone collects it


async def test_no_request_waits_on_a_frozen_job_store(
    sim: FleetSimulator, sqlite_url: str, tmp_path: Path, monitor: Any
) -> None:
    redis = PrivateRedis(tmp_path).start()
    try:
        # A frozen store fails a command after 2.5 s (5 s by default): still longer than any
        # answer below may take, so a request that waited on the store could not pass.
        app = await monitor(
            sqlite_url,
            background_job_store_url=redis.url,
            background_job_store_timeout=2.5,
            worker_metrics_poll_interval=2,
        )
        ids = await _register(app.client, sim, 3)

        async def collected() -> bool:
            return all([(await app.worker(w))["last_collected_at"] for w in ids])

        await eventually(collected)
        redis.freeze()
        for path in ("/api/workers", f"/api/workers/{ids[0]}", "/api/monitoring/jobs", "/api/fleet/summary"):
            started = time.monotonic()
            response = await app.client.get(path)
            assert response.status_code == 200, (path, response.text)
            assert time.monotonic() - started < 1.0, path
        started = time.monotonic()
        answers = await asyncio.gather(*(app.client.get("/api/workers") for _ in range(10)))
        assert all(a.status_code == 200 for a in answers)
        assert time.monotonic() - started < 2.0

        async def marked_stale() -> bool:
            return (await app.client.get("/api/monitoring/jobs")).json()["stale"] is True

        await eventually(marked_stale, timeout=20)
        started = time.monotonic()
        status, checks = await app.ready()
        assert time.monotonic() - started < 5.0
        assert status == 503 and checks["job_store"].startswith("unavailable")
    finally:
        redis.kill()


async def test_ready_answers_within_5_s_with_a_frozen_postgresql(
    sim: FleetSimulator, monitor: Any, tmp_path: Path
) -> None:
    from .private_servers import PrivatePostgres

    postgres = PrivatePostgres().init().start()
    redis = PrivateRedis(tmp_path).start()
    try:
        app = await monitor(
            postgres.url,
            background_job_store_url=redis.url,
            worker_metrics_poll_interval=300,
            database_timeout=20,
        )
        await _register(app.client, sim, 1)
        postgres.freeze()
        redis.freeze()
        try:
            started = time.monotonic()
            status, checks = await app.ready()
            assert time.monotonic() - started < 5.0
            assert status == 503
            assert checks["database"].startswith("unavailable") and checks["job_store"].startswith(
                "unavailable"
            )
        finally:
            postgres.thaw()
            redis.thaw()
    finally:
        redis.kill()
        postgres.stop()
        postgres.remove()


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_heartbeat_pings_once_an_interval_fails_at_once_and_logs_a_broken_checker_once(
    checker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pings, url = checker
    clock = FakeClock()
    async with httpx.AsyncClient(timeout=5) as http:
        heartbeat = Heartbeat(http, f"{url}/hb", interval_seconds=60, clock=clock)

        async def run(region: str, error: str | None = None, after: float = 0.0) -> None:
            clock.now += timedelta(seconds=after)
            await heartbeat.note(RegionOutcome(region, clock.now, error))

        await run("us-east-1")
        await run("eu-west-1", after=1)  # same interval: no second ping
        assert pings.pings == ["/hb"]
        await run("us-east-1", "AWS: AccessDenied", after=10)
        assert pings.pings == ["/hb", "/hb/fail"]
        await run("eu-west-1", after=1)  # us-east-1 still failing: not a success
        assert pings.pings == ["/hb", "/hb/fail"]
        await run("us-east-1", after=1)  # recovered: said at once, not an interval later
        assert pings.pings == ["/hb", "/hb/fail", "/hb"]
        pings.answer = 500
        caplog.clear()  # the failure told above was logged (a warning); count only what follows
        with caplog.at_level(logging.ERROR, logger="cml_monitor.monitoring.heartbeat"):
            for _ in range(3):
                await run("us-east-1", after=61)
        assert len(pings.pings) == 6
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
