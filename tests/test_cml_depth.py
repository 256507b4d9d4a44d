"""CML depth end to end: the simulator's controllers and EC2 → worker JSON, history, alerts, /metrics.

Every new alert kind is driven by a fault injected in the simulator, seen firing through the
API, then resolving when the fault is taken away.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cml_fleet_sim.cml_controllers import VERSION
from cml_fleet_sim.simulator import FleetSimulator

from .conftest import Monitor
from .helpers import cycle as _cycle
from .helpers import eventually
from .helpers import register_with_controllers as _register


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=5)
    simulator.start()
    yield simulator
    simulator.stop()


CONTROLLER_KINDS = {"cml_unreachable", "cml_unhealthy", "license", "disk", "scheduled_event"}


async def _firing(app: Monitor) -> dict[tuple[str, str], dict[str, Any]]:
    """The firing alerts of the kinds this file is about (a simulated worker may run hot)."""
    items = (await app.client.get("/api/alerts", params={"state": "firing"})).json()["items"]
    return {(a["worker_id"], a["kind"]): a for a in items if a["kind"] in CONTROLLER_KINDS}


async def test_controller_fields_reach_the_worker_json_history_and_metrics(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url)
    ids = await _register(app, sim, 1)
    ((instance_id, worker_id),) = ids.items()
    sim.set_labs(instance_id, running=2, stopped=1)
    sim.schedule_event(instance_id, "system-reboot", in_days=3)
    await _cycle(app)
    worker = await app.worker(worker_id)
    cml = worker["cml"]
    assert cml["reachable"] is True and cml["version"] == VERSION and cml["ready"] is True
    assert cml["healthy"] is True and cml["licensed"] is True
    assert (cml["license_registration"], cml["license_authorization"]) == ("COMPLETED", "IN_COMPLIANCE")
    assert cml["license_expires_at"] is not None and cml["license_checked_at"] is not None
    assert (cml["labs_started"], cml["labs_total"]) == (2, 3) and worker["active_labs_count"] == 2
    assert (cml["running_nodes"], cml["total_nodes"], cml["allocated_cpus"], cml["cpu_count"]) == (
        8,
        12,
        16,
        32,
    )
    assert cml["disk_used_percent"] == 35.0 and cml["cpu_percent"] is not None
    assert cml["memory_used_percent"] is not None and cml["errors"] == []
    assert cml["computes"] == [{"hostname": "cml-controller", "healthy": True, "admission_state": "READY"}]
    (event,) = worker["ec2_scheduled_events"]
    assert event["code"] == "system-reboot" and event["not_before"] and event["not_after"]
    assert event["description"] == "Scheduled reboot"

    history = (await app.client.get(f"/api/workers/{worker_id}/metrics")).json()["items"]
    assert history[-1]["running_nodes"] == 8 and history[-1]["disk_used_percent"] == 35.0

    text = (await app.client.get("/metrics")).text
    for name, value in (
        ("cml_monitor_cml_up", "1.0"),
        ("cml_monitor_cml_healthy", "1.0"),
        ("cml_monitor_cml_labs_started", "2.0"),
        ("cml_monitor_cml_running_nodes", "8.0"),
    ):
        assert f'{name}{{worker_id="{worker_id}",worker_name="{instance_id[-6:]}"}} {value}' in text, name
    assert "cml_monitor_cml_license_expiry_timestamp_seconds{" in text
    # What CloudWatch bills: CPU and memory of each running worker, per collection.
    billed = next(
        line
        for line in text.splitlines()
        if line.startswith("cml_monitor_cloudwatch_metrics_requested_total")
    )
    requested = float(billed.split()[-1])
    assert requested >= 2 and requested % 2 == 0


async def test_every_controller_alert_kind_fires_and_resolves(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, cml_licensing_check_interval=1)
    ids = await _register(app, sim, 4)
    not_ready, not_admitted, full, expiring = ids
    await _cycle(app)
    assert await _firing(app) == {}

    sim.set_controller(not_ready, ready=False)
    sim.set_controller(not_admitted, compute_admitted=False)
    sim.set_controller(full, disk_used_percent=97.0)
    sim.set_controller(expiring, license_expires_in_days=3)
    sim.schedule_event(full, "instance-retirement", in_days=10)
    expected = {
        (ids[not_ready], "cml_unhealthy"),
        (ids[not_admitted], "cml_unhealthy"),
        (ids[full], "disk"),
        (ids[full], "scheduled_event"),
        (ids[expiring], "license"),
    }

    async def all_fired() -> bool:  # licensing is read when due (every second here)
        await _cycle(app)
        return set(await _firing(app)) == expected

    await eventually(all_fired, timeout=15)
    firing = await _firing(app)
    assert "not ready" in firing[(ids[not_ready], "cml_unhealthy")]["detail"]
    assert "not admitted: cml-compute-1 REGISTERED" in firing[(ids[not_admitted], "cml_unhealthy")]["detail"]
    assert firing[(ids[full], "disk")]["value"] == 97.0 and firing[(ids[full], "disk")]["threshold"] == 90.0
    assert firing[(ids[full], "scheduled_event")]["detail"].startswith("instance-retirement from ")
    license_alert = firing[(ids[expiring], "license")]
    assert "expires in" in license_alert["detail"] and 2 < license_alert["value"] <= 3

    sim.set_controller(not_ready, ready=True)
    sim.set_controller(not_admitted, compute_admitted=True)
    sim.set_controller(full, disk_used_percent=40.0)
    sim.set_controller(expiring, license_expires_in_days=200)
    sim.complete_events(full)

    async def all_resolved() -> bool:
        await _cycle(app)
        return await _firing(app) == {}

    await eventually(all_resolved, timeout=15)
    resolved = (await app.client.get("/api/alerts", params={"state": "resolved"})).json()["items"]
    assert {(a["worker_id"], a["kind"]) for a in resolved if a["kind"] in CONTROLLER_KINDS} == expected
    assert (await app.worker(ids[full]))["ec2_scheduled_events"] == []  # completed events are not pending


async def test_an_unlicensed_controller_raises_license(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url)
    ((instance_id, worker_id),) = (await _register(app, sim, 1)).items()
    sim.set_controller(instance_id, licensed=False)
    await _cycle(app)  # first read of the controller: licensing is read too
    alert = (await _firing(app))[(worker_id, "license")]
    assert "unlicensed" in alert["detail"] and "registration NOT_REGISTERED" in alert["detail"]


@pytest.mark.parametrize("fault", ["error", "garbage", "html", "hang"])
async def test_a_broken_controller_keeps_the_workers_other_data_and_raises_cml_unreachable(
    sim: FleetSimulator, sqlite_url: str, monitor: Any, fault: str
) -> None:
    app = await monitor(sqlite_url, cml_timeout=1.0)
    ((instance_id, worker_id),) = (await _register(app, sim, 1)).items()
    sim.set_labs(instance_id, running=3)
    await _cycle(app)
    before = await app.worker(worker_id)
    if fault == "hang":
        sim.set_controller(instance_id, latency=30.0)
    else:
        sim.set_controller(instance_id, answer=fault)  # type: ignore[arg-type]
    await _cycle(app)
    after = await app.worker(worker_id)
    assert after["cml"]["reachable"] is False and after["cml"]["errors"]
    for name in ("version", "labs_started", "disk_used_percent", "license_expires_at", "running_nodes"):
        assert after["cml"][name] == before["cml"][name], name
    assert after["active_labs_count"] == 3 and after["status"] == "running"
    assert after["cpu_utilization"] is not None and after["last_collected_at"] > before["last_collected_at"]
    firing = await _firing(app)
    assert (worker_id, "cml_unreachable") in firing
    assert (worker_id, "cml_unhealthy") not in firing  # unreachable says it; health is not guessed
