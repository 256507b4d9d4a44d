"""Several regions: `WORKER_EVENTS_QUEUE_URL` is a comma list, each queue read by its own poller
(moto's SQS on loopback, real HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from cml_monitor.aws.events_queue import queue_region
from cml_monitor.settings import load_settings

from .conftest import REGION


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not true before the deadline")
        await asyncio.sleep(0.1)


def state_change(instance_id: str, state: str) -> str:
    later = (datetime.now(UTC) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "version": "0",
            "id": f"7bf73129-1428-4cd3-a780-{instance_id[-12:].rjust(12, '0')}",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": later,
            "region": REGION,
            "resources": [f"arn:aws:ec2:{REGION}:123456789012:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "state": state},
        }
    )


def test_the_region_of_each_queue_is_read_from_its_url() -> None:
    assert queue_region("https://sqs.eu-west-1.amazonaws.com/1/q", "us-east-1") == "eu-west-1"
    assert queue_region("https://ap-southeast-2.queue.amazonaws.com/1/q", "us-east-1") == "ap-southeast-2"
    assert queue_region("http://127.0.0.1:5000/1/q", "us-east-1") == "us-east-1"
    settings = load_settings(
        worker_events_queue_url=" https://sqs.eu-west-1.amazonaws.com/1/q , https://sqs.us-east-2.amazonaws.com/1/q,"
    )
    assert settings.events_queue_urls == [
        "https://sqs.eu-west-1.amazonaws.com/1/q",
        "https://sqs.us-east-2.amazonaws.com/1/q",
    ]


async def test_each_queue_of_the_list_is_consumed(moto: Any, api_factory: Any) -> None:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto.url)
    first = sqs.create_queue(QueueName="cml-monitor-events-a")["QueueUrl"]
    second = sqs.create_queue(QueueName="cml-monitor-events-b")["QueueUrl"]
    missing = first.rsplit("/", 1)[0] + "/no-such-queue"
    instances = moto.run_instances(2)
    api = await api_factory(worker_events_queue_url=f"{first},{second},{missing}")
    consumers = api.runtime.events_queue.consumers
    assert [c.queue_url for c in consumers] == [first, second, missing]
    ids = []
    for instance_id in instances:
        body = {"name": instance_id[-6:], "aws_region": REGION, "aws_instance_id": instance_id}
        ids.append((await api.client.post("/api/workers", json=body)).json()["id"])
    run = await api.runtime.monitor.run_region(REGION)
    assert run.report is not None and not run.report.failed
    # EC2 changes, and says so through one queue each (the poll interval is 300 s: only an
    # event, and the collection it asks for, can show the change within the deadline).
    moto.ec2().stop_instances(InstanceIds=[instances[0]])
    moto.ec2().terminate_instances(InstanceIds=[instances[1]])
    sqs.send_message(QueueUrl=first, MessageBody=state_change(instances[0], "stopping"))
    sqs.send_message(QueueUrl=second, MessageBody=state_change(instances[1], "shutting-down"))

    async def both_applied() -> bool:
        statuses = [(await api.client.get(f"/api/workers/{i}")).json()["status"] for i in ids]
        return statuses[0] in ("stopping", "stopped") and statuses[1] in ("shutting-down", "terminated")

    await eventually(both_applied)

    async def missing_queue_reported() -> bool:
        checks = (await api.client.get("/ready")).json()["checks"]
        return missing in checks.get("events_queue", "")

    await eventually(missing_queue_reported)  # a failing queue is named; the others were read
    checks = (await api.client.get("/ready")).json()["checks"]
    assert first not in checks["events_queue"] and second not in checks["events_queue"]
    for url in (first, second):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
