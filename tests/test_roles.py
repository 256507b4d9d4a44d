"""Replicas with roles and an event bus: a collection on one replica is live on every replica."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

import httpx

from cml_monitor.api.app import create_app

from .conftest import REGION, Moto, make_settings
from .helpers import cpu, sse_events


async def test_a_collectors_events_reach_an_api_replicas_stream(
    moto: Moto, sqlite_url: str, redis_url: str
) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 55.0)
    common = {"event_bus_url": redis_url, "worker_metrics_poll_interval": 300}
    api_app = create_app(make_settings(sqlite_url, moto.url, cml_monitor_role="api", **common))
    collector_app = create_app(make_settings(sqlite_url, moto.url, cml_monitor_role="collector", **common))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(api_app.router.lifespan_context(api_app))
        await stack.enter_async_context(collector_app.router.lifespan_context(collector_app))
        api = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://api")
        )
        collector = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=collector_app), base_url="http://collector")
        )
        assert (await collector.get("/api/workers")).status_code == 404  # no API on a collector
        assert (await collector.get("/health")).status_code == 200
        ready = (await api.get("/ready")).json()
        assert ready["checks"]["event_bus"] == "ok" and ready["checks"]["job_store"] == "disabled"
        assert not api_app.state.runtime.scheduler.running  # an API replica schedules nothing

        stream = api_app.state.runtime.live_events.subscribe()
        as_worker = api_app.state.runtime.live_events.subscribe(shape="worker")
        first_worker = asyncio.ensure_future(as_worker.__anext__())
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        body = {"name": "w", "aws_region": REGION, "aws_instance_id": instance}
        worker = (await api.post("/api/workers", json=body)).json()
        run = await collector_app.state.runtime.monitor.run_region(REGION)  # the collector's cycle
        assert run.workers == 1
        seen = [json.loads(data) for _, data in sse_events(await asyncio.wait_for(first, 10))]
        while len(seen) < 2:  # the API replica's own first collection, then the collector's
            chunk = await asyncio.wait_for(stream.__anext__(), 10)
            seen += [json.loads(data) for _, data in sse_events(chunk)]
        assert {d["worker_id"] for d in seen} == {worker["id"]}
        assert all(d["metrics"]["cpu_utilization"] == 55.0 for d in seen)
        # The collector's event crossed Redis and still says the whole worker, as GET says it
        # (but for the next run, which this replica re-reads from the shared records meanwhile).
        shown = (await api.get(f"/api/workers/{worker['id']}")).json()
        told_all = [json.loads(data) for _, data in sse_events(await asyncio.wait_for(first_worker, 10))]
        while len(told_all) < 2:
            chunk = await asyncio.wait_for(as_worker.__anext__(), 10)
            told_all += [json.loads(data) for _, data in sse_events(chunk)]
        await as_worker.aclose()
        told = told_all[-1]
        assert told.pop("monitoring").keys() == shown.pop("monitoring").keys()
        assert told == shown and shown["cpu_utilization"] == 55.0
        gauges = (await api.get("/metrics")).text
        assert (
            f'cml_monitor_worker_cpu_utilization_percent{{worker_id="{worker["id"]}",worker_name="w"}} 55.0'
            in gauges
        )
        await stream.aclose()
