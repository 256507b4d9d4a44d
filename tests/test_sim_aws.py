"""The simulated AWS, spoken to by the installed botocore: every operation, every protocol."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cml_fleet_sim.fleet import TokenBucket
from cml_fleet_sim.simulator import FleetSimulator

REGION = "us-east-1"


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=7)
    simulator.start()
    yield simulator
    simulator.stop()


PROTOCOLS = {"cbor": "smithy-rpc-v2-cbor", "json": "json", "query": "query"}


@pytest.fixture(scope="session")
def query_protocol_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """botocore data paths whose CloudWatch model speaks only `json`, or only `query`
    (the protocols of older and other SDKs)."""
    source = Path(botocore.__file__).parent / "data" / "cloudwatch" / "2010-08-01" / "service-2.json.gz"
    paths = {}
    for name in ("json", "query"):
        root = tmp_path_factory.mktemp(f"botocore-{name}")
        model = json.loads(gzip.decompress(source.read_bytes()))
        model["metadata"]["protocol"] = name
        model["metadata"]["protocols"] = [name]
        target = root / "cloudwatch" / "2010-08-01"
        target.mkdir(parents=True)
        (target / "service-2.json").write_text(json.dumps(model))
        paths[name] = root
    return paths


def _session(protocol: str, data_paths: dict[str, Path]) -> botocore.session.Session:
    session = botocore.session.get_session()
    if protocol in data_paths:
        session.set_config_variable("data_path", str(data_paths[protocol]))
    return session


def cloudwatch(sim: FleetSimulator, protocol: str, data_paths: dict[str, Path]):  # type: ignore[no-untyped-def]
    session = _session(protocol, data_paths)
    client = boto3.Session(botocore_session=session).client(
        "cloudwatch", region_name=REGION, endpoint_url=sim.url
    )
    assert client.meta.service_model.protocol == PROTOCOLS[protocol]
    return client


def ec2(sim: FleetSimulator, region: str = REGION):  # type: ignore[no-untyped-def]
    return boto3.client("ec2", region_name=region, endpoint_url=sim.url)


def test_ec2_operations_parse(sim: FleetSimulator) -> None:
    instances = sim.add_workers(3, tags={"Role": "cml"})
    ids = [i.instance_id for i in instances]
    sim.add_workers(1, region="eu-west-1")
    client = ec2(sim)
    statuses = client.describe_instance_status(InstanceIds=ids, IncludeAllInstances=True)["InstanceStatuses"]
    assert sorted(s["InstanceId"] for s in statuses) == sorted(ids)
    assert statuses[0]["InstanceState"] == {"Code": 16, "Name": "running"}
    assert statuses[0]["SystemStatus"]["Status"] == "ok"
    reservations = client.describe_instances(Filters=[{"Name": "tag:Role", "Values": ["cml"]}])[
        "Reservations"
    ]
    assert sorted(r["Instances"][0]["InstanceId"] for r in reservations) == sorted(ids)
    assert reservations[0]["Instances"][0]["Tags"] == [{"Key": "Role", "Value": "cml"}]
    stopped = client.stop_instances(InstanceIds=[ids[0]])["StoppingInstances"][0]
    assert (stopped["PreviousState"]["Name"], stopped["CurrentState"]["Name"]) == ("running", "stopped")
    started = client.start_instances(InstanceIds=[ids[0]])["StartingInstances"][0]
    assert started["CurrentState"]["Name"] == "running"
    client.reboot_instances(InstanceIds=[ids[1]])
    terminated = client.terminate_instances(InstanceIds=[ids[2]])["TerminatingInstances"][0]
    assert terminated["CurrentState"]["Name"] == "terminated"
    running_only = client.describe_instance_status(InstanceIds=ids)["InstanceStatuses"]
    assert len(running_only) == 2
    assert (
        len(client.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]) == 3
    )  # region only


def test_real_pagination(sim: FleetSimulator) -> None:
    sim.add_workers(23, with_controllers=False)
    client = ec2(sim)
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"MaxResults": 5, "IncludeAllInstances": True}
        if token:
            kwargs["NextToken"] = token
        page = client.describe_instance_status(**kwargs)
        seen += [s["InstanceId"] for s in page["InstanceStatuses"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 5 and len(set(seen)) == 23
    paginator = client.get_paginator("describe_instances")
    ids = [
        r["Instances"][0]["InstanceId"]
        for p in paginator.paginate(PaginationConfig={"PageSize": 10})
        for r in p["Reservations"]
    ]
    assert len(set(ids)) == 23


def test_aws_limits_and_errors(sim: FleetSimulator) -> None:
    ids = [i.instance_id for i in sim.add_workers(101, with_controllers=False)]
    client = ec2(sim)
    with pytest.raises(ClientError) as too_many:
        client.describe_instance_status(InstanceIds=ids)
    assert too_many.value.response["Error"]["Code"] == "InvalidRequest"
    assert "maximum number of instance IDs" in too_many.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as missing:
        client.describe_instance_status(InstanceIds=[ids[0], "i-0123456789abcdef0"])
    assert missing.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert "i-0123456789abcdef0" in missing.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as page_size:
        client.describe_instance_status(MaxResults=2000)
    assert page_size.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as combined:
        client.describe_instance_status(InstanceIds=ids[:2], MaxResults=5)
    assert combined.value.response["Error"]["Code"] == "InvalidParameterCombination"


@pytest.mark.parametrize("protocol", ["cbor", "json", "query"])
def test_cloudwatch_operations_parse(
    sim: FleetSimulator, protocol: str, query_protocol_data: dict[str, Path]
) -> None:
    (busy, extended) = sim.add_workers(1) + sim.add_workers(1, agent_dimensions="extended")
    sim.fleet.set_metrics(busy.instance_id, cpu=42.0, memory=61.5)
    client = cloudwatch(sim, protocol, query_protocol_data)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=15)
    query = [
        {
            "Id": "c0",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/EC2",
                    "MetricName": "CPUUtilization",
                    "Dimensions": [{"Name": "InstanceId", "Value": busy.instance_id}],
                },
                "Period": 300,
                "Stat": "Average",
            },
        },
        {
            "Id": "m0",
            "MetricStat": {
                "Metric": {
                    "Namespace": "CWAgent",
                    "MetricName": "mem_used_percent",
                    "Dimensions": [{"Name": "InstanceId", "Value": busy.instance_id}],
                },
                "Period": 300,
                "Stat": "Average",
            },
        },
    ]
    results = {
        r["Id"]: r
        for r in client.get_metric_data(MetricDataQueries=query, StartTime=start, EndTime=end)[
            "MetricDataResults"
        ]
    }
    assert results["c0"]["Values"][:1] == [42.0] and len(results["c0"]["Timestamps"]) == 3
    assert results["m0"]["Values"][0] == 61.5
    assert results["c0"]["Timestamps"][0] > results["c0"]["Timestamps"][1]  # newest first
    statistics = client.get_metric_statistics(
        Namespace="AWS/EC2",
        MetricName="CPUUtilization",
        Dimensions=[{"Name": "InstanceId", "Value": busy.instance_id}],
        StartTime=start,
        EndTime=end,
        Period=300,
        Statistics=["Average", "Maximum"],
    )["Datapoints"]
    assert statistics[0]["Average"] == 42.0 and statistics[0]["Maximum"] == 42.0
    memory = client.list_metrics(Namespace="CWAgent", MetricName="mem_used_percent")["Metrics"]
    extended_dims = next(
        m["Dimensions"] for m in memory if m["Dimensions"][0]["Value"] == extended.instance_id
    )
    assert {d["Name"] for d in extended_dims} == {"InstanceId", "ImageId", "InstanceType"}
    client.put_metric_data(
        Namespace="Custom",
        MetricData=[{"MetricName": "m", "Value": 3.0, "Timestamp": end - timedelta(minutes=2)}],
    )
    stored = client.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "x",
                "MetricStat": {
                    "Metric": {"Namespace": "Custom", "MetricName": "m"},
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=start,
        EndTime=end,
    )["MetricDataResults"][0]
    assert stored["Values"] == [3.0]


@pytest.mark.parametrize("protocol", ["cbor", "json", "query"])
def test_cloudwatch_limits_and_throttling(
    sim: FleetSimulator, protocol: str, query_protocol_data: dict[str, Path]
) -> None:
    client = cloudwatch(sim, protocol, query_protocol_data)
    end = datetime.now(UTC)
    queries = [
        {
            "Id": f"q{i}",
            "MetricStat": {
                "Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization"},
                "Period": 300,
                "Stat": "Average",
            },
        }
        for i in range(501)
    ]
    with pytest.raises(ClientError) as too_many:
        client.get_metric_data(MetricDataQueries=queries, StartTime=end - timedelta(minutes=5), EndTime=end)
    assert too_many.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "500" in too_many.value.response["Error"]["Message"]
    sim.set_faults(throttling=True)
    sim.fleet._buckets[(REGION, "cloudwatch-other")] = TokenBucket(1, 0.001)  # one request, then dry
    no_retry = cloudwatch_no_retry(sim, protocol, query_protocol_data)
    no_retry.list_metrics()
    with pytest.raises(ClientError) as throttled:
        no_retry.list_metrics()
    assert throttled.value.response["Error"]["Code"] == "Throttling"


def cloudwatch_no_retry(sim: FleetSimulator, protocol: str, data_paths: dict[str, Path]):  # type: ignore[no-untyped-def]
    session = _session(protocol, data_paths)
    return boto3.Session(botocore_session=session).client(
        "cloudwatch",
        region_name=REGION,
        endpoint_url=sim.url,
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_ec2_throttling_surfaces_as_request_limit_exceeded(sim: FleetSimulator) -> None:
    sim.add_workers(1, with_controllers=False)
    sim.set_faults(throttling=True)
    sim.fleet._buckets[(REGION, "ec2-describe")] = TokenBucket(1, 0.001)
    client = boto3.client(
        "ec2", region_name=REGION, endpoint_url=sim.url, config=Config(retries={"total_max_attempts": 1})
    )
    client.describe_instance_status()
    with pytest.raises(ClientError) as throttled:
        client.describe_instance_status()
    assert throttled.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert sim.fleet.throttled == 1


def test_state_changes_take_time_unless_told_otherwise() -> None:
    simulator = FleetSimulator(speed=100.0, seed=1)  # 45 s stopping → 0.45 s
    simulator.start()
    try:
        (instance,) = simulator.add_workers(1, with_controllers=False)
        client = ec2(simulator)
        client.stop_instances(InstanceIds=[instance.instance_id])
        state = client.describe_instance_status(InstanceIds=[instance.instance_id], IncludeAllInstances=True)
        assert state["InstanceStatuses"][0]["InstanceState"]["Name"] == "stopping"
        deadline = time.monotonic() + 5
        while simulator.fleet.get(instance.instance_id).state != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        simulator.stop()
