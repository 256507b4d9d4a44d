"""Least privilege and deliberate manual actions, on the simulator's EC2 and controllers.

The simulator plays an IAM policy whose Start/Stop/Reboot statement carries an
`aws:ResourceTag` condition: an instance without the tag answers `UnauthorizedOperation`, as EC2
does. Manual stops and reboots of a worker with started labs need `"force": true`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cml_fleet_sim.simulator import FleetSimulator

from .conftest import REGION, Monitor

MANAGED = {"cml-monitor:managed": "true"}


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=22)
    simulator.start()
    yield simulator
    simulator.stop()


async def register(
    app: Monitor, sim: FleetSimulator, *, tags: dict[str, str], labs: int | None
) -> tuple[str, str]:
    """(instance id, worker id) of a new running worker; with a controller when `labs` is given."""
    (instance,) = sim.add_workers(1, tags=tags, with_controllers=labs is not None)
    body: dict[str, Any] = {"name": f"w-{instance.instance_id[-4:]}", "aws_region": REGION}
    body["aws_instance_id"] = instance.instance_id
    if labs is not None:
        sim.set_labs(instance.instance_id, running=labs, stopped=1)
        body["cml_url"] = sim.controller_url(instance.instance_id)
    response = await app.client.post("/api/workers", json=body)
    assert response.status_code == 201, response.text
    run = await app.runtime.monitor.run_region(REGION)
    assert run.report is not None and not run.report.failed
    return instance.instance_id, response.json()["id"]


async def test_an_action_iam_refuses_is_recorded_failed_saying_which_tag_is_missing(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    sim.fleet.faults.action_tag = ("cml-monitor:managed", "true")
    app = await monitor(sqlite_url)
    untagged, worker_id = await register(app, sim, tags={}, labs=None)
    refused = await app.client.post(f"/api/workers/{worker_id}/stop")
    assert refused.status_code == 502, refused.text
    assert "cml-monitor:managed=true" in refused.json()["detail"]
    (recorded,) = (await app.client.get("/api/actions")).json()["items"]
    assert recorded["result"] == "failed"
    detail = recorded["detail"]
    assert "missing the tag" in detail and "cml-monitor:managed=true" in detail
    assert f"aws ec2 create-tags --region {REGION} --resources {untagged}" in detail
    assert "Key=cml-monitor:managed,Value=true" in detail
    assert sim.fleet.get(untagged).state == "running"  # nothing happened to it

    tagged, tagged_id = await register(app, sim, tags=MANAGED, labs=None)
    done = await app.client.post(f"/api/workers/{tagged_id}/stop")
    assert done.status_code == 202 and done.json()["result"] == "ok", done.text
    assert sim.fleet.get(tagged).state in ("stopping", "stopped")


async def test_the_managed_tag_setting_names_the_tag_in_the_detail(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    sim.fleet.faults.action_tag = ("team", "cml")
    app = await monitor(sqlite_url, cml_monitor_managed_tag="team=cml")
    _, worker_id = await register(app, sim, tags=MANAGED, labs=None)
    refused = await app.client.post(f"/api/workers/{worker_id}/reboot")
    assert refused.status_code == 502
    (recorded,) = (await app.client.get("/api/actions")).json()["items"]
    assert recorded["result"] == "failed" and "Key=team,Value=cml" in recorded["detail"]


async def test_a_stop_over_started_labs_is_refused_unless_forced_and_the_reason_is_kept(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url)
    instance_id, worker_id = await register(app, sim, tags=MANAGED, labs=2)
    labs = (await app.client.get(f"/api/workers/{worker_id}/labs")).json()
    assert labs["error"] is None and len(labs["items"]) == 2
    assert {lab["owner"] for lab in labs["items"]} == {"admin"} and all(lab["title"] for lab in labs["items"])

    for kind in ("stop", "reboot"):
        refused = await app.client.post(f"/api/workers/{worker_id}/{kind}", json={"reason": "patching"})
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert "2 started lab(s) of 1 user(s) (admin)" in detail and '"force": true' in detail
    assert (await app.client.get("/api/actions")).json()["items"] == []  # nothing recorded, nothing sent
    assert sim.fleet.get(instance_id).state == "running" and sim.fleet.get(instance_id).reboots == 0

    bad = await app.client.post(f"/api/workers/{worker_id}/stop", json={"force": "yes"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "force"
    too_long = await app.client.post(f"/api/workers/{worker_id}/stop", json={"reason": "x" * 301})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"][-1] == "reason"

    forced = await app.client.post(
        f"/api/workers/{worker_id}/stop", json={"reason": "kernel patch window", "force": True}
    )
    assert forced.status_code == 202, forced.text
    action = forced.json()
    assert action["result"] == "ok" and action["actor"] == "local"  # authentication is off
    assert action["detail"].startswith("reason: kernel patch window — EC2 reports the instance")
    (recorded,) = (await app.client.get("/api/actions")).json()["items"]
    assert recorded["detail"] == action["detail"]
    assert sim.fleet.get(instance_id).state in ("stopping", "stopped")


async def test_a_worker_without_started_labs_stops_without_force_and_start_takes_a_reason(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url)
    _, worker_id = await register(app, sim, tags=MANAGED, labs=0)
    done = await app.client.post(f"/api/workers/{worker_id}/stop")  # no body at all
    assert (
        done.status_code == 202 and done.json()["result"] == "ok" and done.json()["detail"].startswith("EC2")
    )
    await app.runtime.monitor.run_region(REGION)
    started = await app.client.post(f"/api/workers/{worker_id}/start", json={"reason": "class at 9"})
    assert started.status_code == 202 and started.json()["detail"].startswith("reason: class at 9 — ")


async def test_when_the_controller_cannot_be_read_the_last_count_of_labs_stands(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url)
    instance_id, worker_id = await register(app, sim, tags=MANAGED, labs=3)
    sim.set_controller(instance_id, unreachable=True)
    labs = (await app.client.get(f"/api/workers/{worker_id}/labs")).json()
    assert labs["items"] == [] and labs["error"]
    refused = await app.client.post(f"/api/workers/{worker_id}/reboot")
    assert (
        refused.status_code == 409 and "3 started lab(s) at its last collection" in refused.json()["detail"]
    )
    forced = await app.client.post(f"/api/workers/{worker_id}/reboot", json={"force": True})
    assert forced.status_code == 202 and sim.fleet.get(instance_id).reboots == 1
