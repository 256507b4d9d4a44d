"""The monitor against the simulator: fidelity with moto, impaired checks, throttling survived."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME
from cml_fleet_sim.fleet import TokenBucket
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.aws import AwsEc2Client
from cml_monitor.cml import CmlControllerClient
from cml_monitor.domain import WorkerStatus
from cml_monitor.monitoring import FleetCollector
from cml_monitor.storage import CMLWorkerRepository

from .conftest import REGION, Moto
from .helpers import register


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=3)
    simulator.start()
    yield simulator
    simulator.stop()


async def _scenario(url: str, instance_ids: list[str], repo: CMLWorkerRepository) -> list[dict[str, Any]]:
    """The same script against any AWS endpoint: seed metrics, collect, stop, terminate, collect."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=url)
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=url)
    at = datetime.now(UTC) - timedelta(minutes=2)
    for instance_id, cpu, memory in zip(instance_ids, (42.0, 0.0, 97.5), (61.5, None, 12.25), strict=True):
        for namespace, metric, value in (
            ("AWS/EC2", "CPUUtilization", cpu),
            ("CWAgent", "mem_used_percent", memory),
        ):
            if value is None:
                continue  # this instance runs no CloudWatch agent
            datum = {
                "MetricName": metric,
                "Value": value,
                "Timestamp": at,
                "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
            }
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=[datum])
    workers = [await register(repo, i) for i in instance_ids]
    client = AwsEc2Client(endpoint_url=url, max_attempts=2)
    collector = FleetCollector(repo, client)
    observed = []
    try:
        for step in ("first", "after stop and terminate"):
            if step != "first":
                ec2.stop_instances(InstanceIds=[instance_ids[1]])
                ec2.terminate_instances(InstanceIds=[instance_ids[2]])
            report = await collector.collect([w.id for w in workers])
            events = {e.worker_id: e.to_json() for e in report.events}
            for worker in workers:
                data = events[worker.id]
                observed.append(
                    {
                        "step": step,
                        "index": workers.index(worker),
                        "status": data["status"],
                        "metrics": data["metrics"],
                        "ec2": data["ec2"],
                    }
                )
    finally:
        await client.close()
    return observed


async def test_the_same_scenario_gives_the_same_answers_on_moto_and_the_simulator(
    moto: Moto, sim: FleetSimulator, sqlite_repository: CMLWorkerRepository, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from .conftest import _repository

    on_moto = await _scenario(moto.url, moto.run_instances(3), sqlite_repository)
    sim_repo = await _repository(f"sqlite+aiosqlite:///{tmp_path / 'sim.db'}")
    try:
        # The second instance runs no CloudWatch agent, like the one given no memory on moto.
        instances = [
            *sim.add_workers(1, with_controllers=False),
            *sim.add_workers(1, with_controllers=False, agent_dimensions="none"),
            *sim.add_workers(1, with_controllers=False),
        ]
        on_sim = await _scenario(sim.url, [i.instance_id for i in instances], sim_repo)
    finally:
        await sim_repo.engine.dispose()
    assert on_sim == on_moto
    assert [o["status"] for o in on_sim] == ["running"] * 3 + ["running", "stopped", "terminated"]
    assert on_sim[0]["metrics"] == {"cpu_utilization": 42.0, "memory_utilization": 61.5}
    assert on_sim[1]["metrics"] == {"cpu_utilization": 0.0, "memory_utilization": None}


async def test_an_impaired_check_reaches_the_worker(
    sim: FleetSimulator, sqlite_repository: CMLWorkerRepository
) -> None:
    (instance,) = sim.add_workers(1)
    worker = await register(
        sqlite_repository, instance.instance_id, cml_url=sim.controller_url(instance.instance_id)
    )
    sim.fleet.set_status_checks(instance.instance_id, system="impaired")
    client = AwsEc2Client(endpoint_url=sim.url, max_attempts=2)
    cml = CmlControllerClient(username=USERNAME, password=PASSWORD, timeout=2)
    try:
        report = await FleetCollector(sqlite_repository, client, cml).collect([worker.id])
    finally:
        await client.close()
        await cml.close()
    assert [e.system_status for e in report.events] == ["impaired"]
    stored = await sqlite_repository.get_by_id_async(worker.id)
    assert stored.ec2_system_status_check == "impaired"
    assert stored.ec2_instance_status_check == "ok"
    assert stored.active_labs_count == instance.running_labs
    assert stored.cpu_utilization is not None and stored.memory_utilization is not None


class EmptyBucket(TokenBucket):
    """A token bucket that refuses a fixed number of calls, then admits every one."""

    def __init__(self, refusals: int) -> None:
        super().__init__(capacity=1, rate=0)
        self.refusals = refusals

    def take(self) -> bool:
        if self.refusals > 0:
            self.refusals -= 1
            return False
        return True


async def test_throttling_is_retried_until_the_bucket_refills(
    sim: FleetSimulator, sqlite_repository: CMLWorkerRepository
) -> None:
    instances = sim.add_workers(250, with_controllers=False)
    workers = [await register(sqlite_repository, i.instance_id) for i in instances]
    sim.set_faults(throttling=True)
    # A bucket that refuses its first three calls whatever the clock says (a slow refill raced
    # with a slow machine: set up late, the bucket had refilled before the first call).
    sim.fleet._buckets[(REGION, "ec2-describe")] = EmptyBucket(refusals=3)
    client = AwsEc2Client(endpoint_url=sim.url, max_attempts=8)
    try:
        report = await FleetCollector(sqlite_repository, client).collect([w.id for w in workers])
    finally:
        await client.close()
    assert sim.fleet.throttled == 3
    assert not report.failed and len(report.events) == len(workers)
    assert client.requests.snapshot()[("ec2", "DescribeInstanceStatus")] >= 3 + 1
    stored = await sqlite_repository.get_by_id_async(workers[-1].id)
    assert stored.status is WorkerStatus.RUNNING


async def test_large_regions_are_paged_1000_at_a_time(sim: FleetSimulator) -> None:
    mine = [i.instance_id for i in sim.add_workers(1200, with_controllers=False)]
    sim.add_workers(300, with_controllers=False)  # other instances in the region
    sim.fleet.stop(mine[5])
    client = AwsEc2Client(endpoint_url=sim.url, max_attempts=2)
    try:
        statuses = await client.describe_instance_statuses(REGION, [*mine, "i-0123456789abcdef0"])
        assert client.requests.snapshot() == {("ec2", "DescribeInstanceStatus"): 2}  # 1,500 in 2 pages
        assert len(statuses) == 1201 and statuses[mine[5]].instance_state == "stopped"
        assert statuses["i-0123456789abcdef0"].found is False
        client.requests.reset()
        await client.describe_instance_statuses(REGION, mine[:150])  # small: ids again
        assert client.requests.snapshot() == {("ec2", "DescribeInstanceStatus"): 2}
    finally:
        await client.close()
