"""EC2 state changes through EventBridge → SQS: the simulator's queue and moto's, real HTTP.

The poll interval is the default 300 s, so whatever changes within the tests' deadlines came
through the queue, not through a collection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from cml_fleet_sim.simulator import FleetSimulator
from cml_fleet_sim.sqs import SimulatedQueue

from .conftest import REGION, Monitor
from .helpers import cycle as _cycle
from .helpers import eventually

HOOK = "http://127.0.0.1:9/hook"  # a receiver that is never up: the outbox rows are what is read


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=21)
    simulator.start()
    yield simulator
    simulator.stop()


async def _watched(
    sim: FleetSimulator, sqlite_url: str, monitor: Any, count: int
) -> tuple[Monitor, SimulatedQueue, list[Any], list[str]]:
    queue = sim.enable_events()
    app = await monitor(sqlite_url, worker_events_queue_url=queue.url, worker_notification_webhooks=HOOK)
    instances = sim.add_workers(count, with_controllers=False)
    ids = []
    for instance in instances:
        body = {
            "name": instance.instance_id[-6:],
            "aws_region": REGION,
            "aws_instance_id": instance.instance_id,
        }
        ids.append((await app.client.post("/api/workers", json=body)).json()["id"])
    await _cycle(app)
    return app, queue, instances, ids


async def _status(app: Monitor, worker_id: str) -> str:
    return (await app.worker(worker_id))["status"]


def _events_metric(text: str, kind: str, result: str) -> float:
    prefix = f'cml_monitor_aws_events_total{{result="{result}",type="{kind}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def _metric(app: Monitor, kind: str, result: str) -> float:
    return _events_metric((await app.client.get("/metrics")).text, kind, result)


async def test_a_stop_behind_our_back_is_known_in_seconds_once_and_alerts(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app, queue, (instance,), (worker_id,) = await _watched(sim, sqlite_url, monitor, 1)
    queue.faults.duplicates = True  # at-least-once delivery: every message twice
    sim.fleet.stop(instance.instance_id, requested=False)

    async def stopped() -> bool:
        return await _status(app, worker_id) == "stopped"

    await eventually(stopped, timeout=10)
    await eventually(lambda: queue.pending() == 0, timeout=10)
    worker = await app.worker(worker_id)
    assert worker["status_changed_at"] is not None
    firing = (await app.client.get("/api/alerts", params={"state": "firing"})).json()["items"]
    assert [a["kind"] for a in firing if a["worker_id"] == worker_id] == ["unexpected_stop"]
    changes = [
        n
        for n in (await app.client.get("/api/notifications")).json()["items"]
        if n["event_type"] == "worker.status_changed"
    ]
    # running → stopping → stopped: two changes, each told once although delivered twice.
    assert len(changes) == 2
    # Four deliveries: each change applied once (or first seen by the collection the event
    # started), the copies stale.
    applied = await _metric(app, "state_change", "applied")
    assert applied >= 1 and applied + await _metric(app, "state_change", "stale") == 4


async def test_out_of_order_malformed_and_unknown_instance_messages_change_nothing_wrong(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app, queue, (instance,), (worker_id,) = await _watched(sim, sqlite_url, monitor, 1)
    queue.faults.out_of_order = True  # "stopping" is held back and arrives after "stopped"
    sim.fleet.stop(instance.instance_id, requested=False)
    queue.faults.out_of_order = False
    queue.malformed()
    stranger = sim.add_workers(1, with_controllers=False)[0]  # not registered
    sim.fleet.stop(stranger.instance_id, requested=False)
    await eventually(lambda: queue.pending() == 0, timeout=10)

    async def settled() -> bool:
        return await _metric(app, "unknown", "malformed") == 1

    await eventually(settled, timeout=10)
    assert await _status(app, worker_id) == "stopped"  # the late "stopping" did not win
    assert await _metric(app, "state_change", "stale") >= 1
    assert await _metric(app, "state_change", "unknown_instance") == 2  # its stopping and stopped
    assert queue.deleted == queue.received  # everything read was deleted


async def test_a_queue_that_refuses_access_is_reported_and_polling_goes_on(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    queue = sim.enable_events()
    queue.faults.access_denied = True
    app = await monitor(sqlite_url, worker_events_queue_url=queue.url)

    async def reported() -> bool:
        response = await app.client.get("/ready")
        return "AccessDenied" in response.json()["checks"].get("events_queue", "")

    await eventually(reported, timeout=10)
    ready = await app.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["events_queue"].startswith("degraded")
    (instance,) = sim.add_workers(1, with_controllers=False)
    body = {"name": "w", "aws_region": REGION, "aws_instance_id": instance.instance_id}
    worker_id = (await app.client.post("/api/workers", json=body)).json()["id"]
    await _cycle(app)  # collections are not affected
    assert await _status(app, worker_id) == "running"
    queue.faults.access_denied = False
    # A state change for the next receive to come back with at once: on an empty queue it is a
    # 20 s long poll, and the problem is cleared when a receive answers.
    sim.fleet.stop(instance.instance_id, requested=False)

    async def recovered() -> bool:
        return (await app.client.get("/ready")).json()["checks"].get("events_queue") == "ok"

    await eventually(recovered, timeout=30)  # the backoff is 1, 2, 4 … s

    async def stopped() -> bool:
        return await _status(app, worker_id) == "stopped"

    await eventually(stopped, timeout=10)  # read from the queue again


async def test_a_message_received_but_not_applied_before_a_crash_is_applied_after_restart(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    queue = sim.enable_events()
    first = await monitor(sqlite_url)  # registers and collects; reads no queue
    (instance,) = sim.add_workers(1, with_controllers=False)
    body = {"name": "w", "aws_region": REGION, "aws_instance_id": instance.instance_id}
    worker_id = (await first.client.post("/api/workers", json=body)).json()["id"]
    await _cycle(first)
    sim.fleet.stop(instance.instance_id, requested=False)
    # A process killed between receive and delete: the messages are in flight, never deleted.
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=sim.url)
    taken = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, VisibilityTimeout=2)
    assert len(taken["Messages"]) == 2 and queue.deleted == 0
    again = await monitor(sqlite_url, worker_events_queue_url=queue.url)  # the restart

    async def stopped() -> bool:
        return await _status(again, worker_id) == "stopped"

    await eventually(stopped, timeout=15)
    await eventually(lambda: queue.pending() == 0, timeout=10)
    assert queue.deleted == 2


async def test_the_consumer_reads_moto_sqs_too(moto: Any, api_factory: Any) -> None:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto.url)
    queue_url = sqs.create_queue(QueueName="cml-monitor-events")["QueueUrl"]
    (instance_id,) = moto.run_instances(1)
    api = await api_factory(worker_events_queue_url=queue_url)
    body = {"name": "m", "aws_region": REGION, "aws_instance_id": instance_id}
    worker_id = (await api.client.post("/api/workers", json=body)).json()["id"]
    await _cycle(api)
    assert (await api.client.get(f"/api/workers/{worker_id}")).json()["status"] == "running"
    later = (datetime.now(UTC) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    envelope = {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": later,
        "region": REGION,
        "resources": [f"arn:aws:ec2:{REGION}:123456789012:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, "state": "stopping"},
    }
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope))
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"hello": "world"}))  # foreign

    async def stopping() -> bool:
        return (await api.client.get(f"/api/workers/{worker_id}")).json()["status"] == "stopping"

    await eventually(stopping, timeout=15)

    async def drained() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            attributes["ApproximateNumberOfMessages"] == "0"
            and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
        )

    await eventually(drained, timeout=15)
