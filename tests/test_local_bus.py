"""The local channel of `serve` (a real Unix socket) and the merge of the collector's metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from cml_monitor.collector_metrics import CollectorMetricsRelay
from cml_monitor.domain import WorkerMetricsCollected, WorkerStatus
from cml_monitor.local_bus import ChannelClient, ChannelClosed, ChannelServer
from cml_monitor.metrics import PrometheusMetrics
from cml_monitor.monitoring import ObserverPublisher


class Sink:
    def __init__(self) -> None:
        self.events: list[WorkerMetricsCollected] = []
        self.got = asyncio.Event()

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        self.events.extend(events)
        self.got.set()


def event(worker_id: str, cpu: float) -> WorkerMetricsCollected:
    return WorkerMetricsCollected(
        worker_id=worker_id,
        worker_name=f"name-{worker_id}",
        aws_instance_id="i-0123456789abcdef0",
        aws_region="us-east-1",
        status=WorkerStatus.RUNNING,
        previous_status=WorkerStatus.RUNNING,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        cpu_utilization=cpu,
        memory_utilization=None,
        instance_state="running",
        system_status="ok",
        instance_status="ok",
        active_labs_count=0,
    )


async def test_events_calls_and_snapshots_cross_the_socket(tmp_path: Path) -> None:
    sink = Sink()
    server = ChannelServer(str(tmp_path / "c.sock"), ObserverPublisher([sink]))
    snapshots: list[dict[str, Any]] = []
    snapped = asyncio.Event()

    def on_snapshot(_kind: str, message: dict[str, Any]) -> None:
        snapshots.append(message)
        snapped.set()

    server.on_snapshot = on_snapshot
    await server.start()

    async def handler(method: str, params: dict[str, Any]) -> Any:
        if method == "fail":
            raise ValueError("no")
        return {"method": method, **params}

    client = ChannelClient(server.path, handler)
    try:
        with pytest.raises(ChannelClosed):
            await server.call("readiness", 1.0)  # nobody connected yet: fails at once
        await client.start()
        assert await server.wait_connected(5)
        await client.observe([event("a", 12.5), event("b", 99.0)])
        await asyncio.wait_for(sink.got.wait(), 5)
        assert [(e.worker_id, e.cpu_utilization) for e in sink.events] == [("a", 12.5), ("b", 99.0)]
        assert sink.events[0] == event("a", 12.5)
        assert await server.call("view", 5, worker_id="w") == {"method": "view", "worker_id": "w"}
        with pytest.raises(RuntimeError, match="ValueError: no"):
            await server.call("fail", 5)
        await client.send({"t": "metrics", "text": "x 1\n"})
        await asyncio.wait_for(snapped.wait(), 5)
        assert snapshots[0]["text"] == "x 1\n"
    finally:
        await client.close()
        await server.close()
    assert not await asyncio.to_thread(Path(server.path).exists)


async def test_a_client_of_a_closed_server_drops_events_and_reconnects(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sock")
    first = ChannelServer(path, ObserverPublisher([Sink()]))
    await first.start()
    client = ChannelClient(path, None)
    await client.start()
    assert await first.wait_connected(5)
    await first.close()
    await client.observe([event("lost", 1.0)])  # nobody there: dropped, no error
    sink = Sink()
    second = ChannelServer(path, ObserverPublisher([sink]))
    await second.start()
    try:
        assert await second.wait_connected(10)
        await client.observe([event("after", 2.0)])
        await asyncio.wait_for(sink.got.wait(), 5)
        assert [e.worker_id for e in sink.events] == ["after"]
    finally:
        await client.close()
        await second.close()


def test_the_collectors_counters_add_up_and_its_gauges_win() -> None:
    child = PrometheusMetrics()
    child.on_aws_request("ec2", "DescribeInstanceStatus")
    child.on_aws_request("ec2", "DescribeInstanceStatus")
    child.on_aws_request("cloudwatch", "GetMetricData")
    child.collection_seconds.observe(1.5)
    child.alerts_firing.labels("cpu", "warning").set(3)
    parent = PrometheusMetrics()
    parent.on_aws_request("ec2", "DescribeInstanceStatus")  # a manual action's call, say
    parent.alerts_firing.labels("cpu", "warning").set(1)
    relay = CollectorMetricsRelay(parent)
    relay.on_snapshot("metrics", {"text": generate_latest(child.registry).decode()})
    text = generate_latest(parent.registry).decode()
    assert 'cml_monitor_aws_requests_total{operation="DescribeInstanceStatus",service="ec2"} 3.0' in text
    assert 'cml_monitor_aws_requests_total{operation="GetMetricData",service="cloudwatch"} 1.0' in text
    assert "cml_monitor_collection_seconds_count 1.0" in text
    assert 'cml_monitor_alerts_firing{kind="cpu",severity="warning"} 3.0' in text
    assert text.count("# TYPE cml_monitor_aws_requests_total counter") == 1
    relay.forget_child()
    text = generate_latest(parent.registry).decode()
    assert 'cml_monitor_aws_requests_total{operation="DescribeInstanceStatus",service="ec2"} 1.0' in text
    assert 'cml_monitor_alerts_firing{kind="cpu",severity="warning"} 1.0' in text


async def test_the_apis_dispatcher_wake_reaches_the_collectors_dispatcher(tmp_path: Path) -> None:
    from cml_monitor.collector_process import CollectorService
    from cml_monitor.supervisor import RemoteScheduler

    woke = asyncio.Event()

    class Dispatcher:
        def wake(self) -> None:
            woke.set()

    class Runtime:
        dispatcher = Dispatcher()
        scheduler = None

    server = ChannelServer(str(tmp_path / "c.sock"))
    await server.start()
    client = ChannelClient(server.path, CollectorService(Runtime(), local_bus=True))  # type: ignore[arg-type]
    try:
        await client.start()
        assert await server.wait_connected(5)
        RemoteScheduler(server).wake_dispatcher()
        await asyncio.wait_for(woke.wait(), 5)
    finally:
        await client.close()
        await server.close()
