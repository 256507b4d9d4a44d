"""Discovery by tags on moto: register the tagged instances, mark and forget terminated ones."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cml_fleet_sim.serving import free_port
from cml_monitor.aws import AwsEc2Client
from cml_monitor.clock import utcnow
from cml_monitor.domain.discovery import TaggedInstance, render_cml_url, template_problem
from cml_monitor.settings import SettingsError, load_settings
from cml_monitor.storage import LeaseStore
from cml_monitor.usecases.discovery import DiscoverySettings, WorkerDiscovery

from .conftest import REGION, Moto

# Loopback only: the template takes the host from a tag the test sets to 127.0.0.2.
TEMPLATE = "http://{tag:CmlHost}:9/{instance_id}"
SECOND_REGION = "eu-west-1"


def tag(moto: Moto, instance_ids: list[str], region: str = REGION, **tags: str) -> None:
    moto.ec2(region).create_tags(
        Resources=instance_ids, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )


def test_template_rendering_and_checks() -> None:
    instance = TaggedInstance(
        "i-0123456789abcdef0", "running", private_ip="10.0.0.5", public_dns=None, tags={"CmlHost": "cml-a"}
    )
    assert render_cml_url("https://{private_ip}:8443", instance) == "https://10.0.0.5:8443"
    assert (
        render_cml_url("https://{tag:CmlHost}/{instance_id}", instance) == "https://cml-a/i-0123456789abcdef0"
    )
    assert render_cml_url("https://{public_dns}", instance) is None  # a value it needs is missing
    assert render_cml_url("https://{tag:Missing}", instance) is None
    assert template_problem("https://{private_ip}") is None
    assert "unknown placeholder {private_ipv6}" in str(template_problem("https://{private_ipv6}"))
    assert "http(s)" in str(template_problem("ftp://{private_ip}"))
    assert "brace" in str(template_problem("https://{private_ip"))


def test_discovery_settings_are_checked() -> None:
    good = load_settings(
        _env_file=None,
        worker_discovery_tags="Role=cml, Team = lab",
        worker_discovery_regions="us-east-1,eu-west-1",
        worker_discovery_cml_url="https://{private_dns}:8443",
    )
    assert good.discovery_tags == {"Role": "cml", "Team": "lab"}
    assert good.worker_discovery_regions == ["us-east-1", "eu-west-1"]
    assert good.worker_discovery_interval == 600 and good.worker_discovery_forget_after == 604_800
    for name, value in (
        ("worker_discovery_tags", "Role"),
        ("worker_discovery_regions", "US East"),
        ("worker_discovery_cml_url", "https://{ip}"),
        ("worker_discovery_interval", "1"),
    ):
        with pytest.raises(SettingsError, match=name.upper()):
            load_settings(_env_file=None, **{name: value})


async def test_discovery_registers_marks_and_forgets(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    a, b, untagged = moto.run_instances(3)
    (far,) = moto.run_instances(1, region=SECOND_REGION)
    tag(moto, [a, b], Role="cml", CmlHost="127.0.0.2")
    tag(moto, [a], Name="cml-a")
    tag(moto, [untagged], Role="other")
    tag(moto, [far], SECOND_REGION, Role="cml", Name="cml-far")
    api = await api_factory(
        worker_monitoring_enabled=False,
        worker_discovery_tags="Role=cml",
        worker_discovery_cml_url=TEMPLATE,
    )
    runtime = api.runtime
    assert runtime.discovery is not None
    manual = await api.client.post(
        "/api/workers", json={"name": "by-hand", "aws_region": SECOND_REGION, "aws_instance_id": far}
    )
    assert manual.status_code == 201
    before = runtime.aws.requests.snapshot().get(("ec2", "DescribeInstances"), 0)

    report = await runtime.discovery.run_once()

    # Regions: the default one and those of registered workers; one paged call each.
    assert report.regions == [SECOND_REGION, REGION] and report.failed == {}
    assert runtime.aws.requests.snapshot()[("ec2", "DescribeInstances")] - before == 2
    found = {w.aws_instance_id: w for w in report.registered}
    assert set(found) == {a, b}
    assert found[a].name == "cml-a" and found[b].name == b
    assert found[a].cml_url == f"http://127.0.0.2:9/{a}"
    assert found[a].discovered_at is not None
    listed = (await api.client.get("/api/workers")).json()
    assert {w["aws_instance_id"] for w in listed["items"]} == {a, b, far}
    assert next(w for w in listed["items"] if w["aws_instance_id"] == far)["discovered_at"] is None

    again = await runtime.discovery.run_once()
    assert again.registered == [] and again.terminated == []

    moto.ec2().terminate_instances(InstanceIds=[a])
    moto.ec2(SECOND_REGION).terminate_instances(InstanceIds=[far])
    marked = await runtime.discovery.run_once()
    assert marked.terminated == [found[a].id]  # the worker registered by hand is not discovery's
    terminated = (await api.client.get(f"/api/workers/{found[a].id}")).json()
    assert terminated["status"] == "terminated"
    assert marked.forgotten == []  # not yet: forgotten after WORKER_DISCOVERY_FORGET_AFTER

    later = utcnow() + timedelta(days=8)
    forgetting = WorkerDiscovery(
        runtime.workers,
        runtime.repository,
        runtime.aws,
        runtime.discovery.settings,
        leases=LeaseStore(runtime.engine),
        holder=runtime.discovery.holder,
        clock=lambda: later,
    )
    forgot = await forgetting.run_once()
    assert forgot.forgotten == [found[a].id]
    assert (await api.client.get(f"/api/workers/{found[a].id}")).status_code == 404
    assert (await api.client.get(f"/api/workers/{manual.json()['id']}")).status_code == 200


async def test_only_the_lease_holder_discovers(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    (instance,) = moto.run_instances(1)
    tag(moto, [instance], Role="cml")
    api = await api_factory(worker_monitoring_enabled=False, worker_discovery_tags="Role=cml")
    runtime = api.runtime
    settings = DiscoverySettings(tags={"Role": "cml"}, default_region=REGION, interval=600)
    leases = LeaseStore(runtime.engine)

    def replica(holder: str) -> WorkerDiscovery:
        return WorkerDiscovery(
            runtime.workers,
            runtime.repository,
            runtime.aws,
            settings,
            leases=leases,
            holder=holder,
            clock=utcnow,
        )

    first = await replica("replica-1").run_once()
    second = await replica("replica-2").run_once()
    assert not first.skipped and [w.aws_instance_id for w in first.registered] == [instance]
    assert second.skipped and second.registered == []


async def test_a_blocked_template_address_registers_without_a_controller(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    (instance,) = moto.run_instances(1)
    tag(moto, [instance], Role="cml", CmlHost="127.0.0.2")
    api = await api_factory(
        worker_monitoring_enabled=False,
        worker_discovery_tags="Role=cml",
        worker_discovery_cml_url=TEMPLATE,
        cml_url_blocked_networks="127.0.0.0/8",  # the SSRF guard refuses the rendered URL
    )
    report = await api.runtime.discovery.run_once()
    assert [(w.aws_instance_id, w.cml_url) for w in report.registered] == [(instance, None)]


async def test_an_aws_failure_is_reported_and_survived(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory(worker_monitoring_enabled=False, worker_discovery_tags="Role=cml")
    runtime = api.runtime
    closed = AwsEc2Client(endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    try:
        down = WorkerDiscovery(
            runtime.workers, runtime.repository, closed, runtime.discovery.settings, clock=utcnow
        )
        report = await down.run_once()
    finally:
        await closed.close()
    assert list(report.failed) == [REGION] and report.registered == []
