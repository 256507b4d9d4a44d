"""`AwsEc2Client` against a real moto server over HTTP."""

from datetime import timedelta

import pytest

from cml_monitor.aws import AwsEc2Client

from .conftest import REGION, Moto
from .helpers import cpu, memory, put

__all__ = ["cpu", "memory", "put"]  # once defined here; other tests import them from .helpers


async def test_statuses_of_running_stopped_and_unknown_instances(moto: Moto, aws: AwsEc2Client) -> None:
    running, stopped = moto.run_instances(2)
    moto.ec2().stop_instances(InstanceIds=[stopped])
    missing = "i-0123456789abcdef0"
    statuses = await aws.describe_instance_statuses(REGION, [running, stopped, missing])
    assert statuses[running].instance_state == "running"
    assert statuses[running].system_status == "ok"
    assert statuses[stopped].instance_state == "stopped"
    assert statuses[missing].found is False
    assert statuses[missing].instance_state is None


async def test_seed_call_shapes(moto: Moto, aws: AwsEc2Client) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 42.0)
    checks = await aws.get_instance_status_checks(REGION, instance)
    assert checks["instance_state"] == "running"
    usage = await aws.get_instance_resources_utilization(REGION, instance, timedelta(minutes=5))
    assert usage.avg_cpu_utilization == 42.0
    assert usage.avg_memory_utilization is None


async def test_utilization_values_zero_and_missing(moto: Moto, aws: AwsEc2Client) -> None:
    a, b, c = moto.run_instances(3)
    cpu(moto, a, 42.0)
    memory(moto, a, 61.5)
    cpu(moto, b, 0.0)
    memory(moto, b, 0.0)
    usage = await aws.get_utilization(REGION, [a, b, c])
    assert (usage[a].avg_cpu_utilization, usage[a].avg_memory_utilization) == (42.0, 61.5)
    assert (usage[b].avg_cpu_utilization, usage[b].avg_memory_utilization) == (0.0, 0.0)
    assert (usage[c].avg_cpu_utilization, usage[c].avg_memory_utilization) == (None, None)


async def test_memory_under_a_larger_dimension_set_is_found_and_cached(moto: Moto, aws: AwsEc2Client) -> None:
    (instance,) = moto.run_instances(1)
    memory(moto, instance, 77.0, extra={"ImageId": "ami-1", "InstanceType": "m5.xlarge"})
    usage = await aws.get_utilization(REGION, [instance])
    assert usage[instance].avg_memory_utilization == 77.0
    aws.requests.reset()
    await aws.get_utilization(REGION, [instance])
    assert ("cloudwatch", "ListMetrics") not in aws.requests.snapshot()


async def test_the_newest_period_wins(moto: Moto, aws: AwsEc2Client) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 10.0, minutes_ago=12)
    cpu(moto, instance, 20.0, minutes_ago=7)
    cpu(moto, instance, 30.0, minutes_ago=2)
    usage = await aws.get_utilization(REGION, [instance])
    assert usage[instance].avg_cpu_utilization == 30.0


@pytest.mark.parametrize("count", [1, 150, 250])
async def test_requests_are_batched_and_counted(moto: Moto, aws: AwsEc2Client, count: int) -> None:
    ids = moto.run_instances(count)
    await aws.get_utilization(REGION, ids)  # warms the dimension cache
    aws.requests.reset()
    await aws.describe_instance_statuses(REGION, ids)
    await aws.get_utilization(REGION, ids)
    counts = aws.requests.snapshot()
    assert counts[("ec2", "DescribeInstanceStatus")] == -(-count // 100)
    assert counts[("cloudwatch", "GetMetricData")] == -(-2 * count // 500)
    assert aws.requests.total() == -(-count // 100) + -(-2 * count // 500)


async def test_one_long_lived_client_per_region(moto: Moto, aws: AwsEc2Client) -> None:
    (instance,) = moto.run_instances(1)
    await aws.describe_instance_statuses(REGION, [instance])
    first = await aws._pool.client("ec2", REGION)
    await aws.describe_instance_statuses(REGION, [instance])
    assert await aws._pool.client("ec2", REGION) is first


async def test_import_by_tags(moto: Moto, aws: AwsEc2Client) -> None:
    ec2 = moto.ec2()
    tagged, _other = moto.run_instances(2)
    ec2.create_tags(
        Resources=[tagged], Tags=[{"Key": "Role", "Value": "cml"}, {"Key": "Name", "Value": "lab-7"}]
    )
    found = await aws.describe_instances_by_tags(REGION, {"Role": "cml"})
    assert [(f["instance_id"], f["name"]) for f in found] == [(tagged, "lab-7")]
