"""Idle workers, auto-pause, remediation and the audit trail, on the simulator's EC2 and controllers.

Collections are run one at a time (`run_region`), so every test says exactly which cycle did
what; the automatic actions run as the region's observer, as in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.actions import ActionInFlight
from cml_monitor.domain import WorkerStatus
from cml_monitor.domain.actions import AUTO, Action, ActionKind, ActionReason
from cml_monitor.monitoring.collector import metrics_event

from .conftest import REGION, Monitor
from .helpers import cycle as _cycle
from .helpers import register_with_controllers as _register

AUTOMATION = "00000000-0000-4000-a000-000000000001"


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=9)
    simulator.start()
    yield simulator
    simulator.stop()


def quiet(sim: FleetSimulator, instance_id: str) -> None:
    """No lab, a CPU under the idle floor: idle once nobody has been active for the timeout."""
    sim.set_labs(instance_id, running=0, stopped=1)
    sim.fleet.set_metrics(instance_id, cpu=2.0)


async def backdate(app: Monitor, worker_id: str, hours: float = 2.0) -> None:
    """Registered and seen starting `hours` ago, so that the idle timeout can have passed."""
    repository = app.runtime.repository
    worker = await repository.get_by_id_async(worker_id)
    assert worker is not None
    worker.created_at = worker.created_at - timedelta(hours=hours)
    if worker.status_changed_at is not None:
        worker.status_changed_at = worker.status_changed_at - timedelta(hours=hours)
    await repository.update_async(worker)


async def actions(app: Monitor, **params: Any) -> list[dict[str, Any]]:
    response = await app.client.get("/api/actions", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


PAUSE = {"worker_auto_pause_enabled": True, "worker_auto_pause_grace": 0, "worker_idle_timeout": 3600}


async def test_an_idle_worker_is_stopped_once_and_the_others_never(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, **PAUSE)
    ids = await _register(app, sim, 7)
    idle, lab, active, automated, busy, switched_off, started_by_hand = ids
    for instance_id in ids:
        quiet(sim, instance_id)
    sim.set_labs(lab, running=1)
    sim.controllers.get(active).record_activity("5b7f2d3c-1f2e-4a3b-9c8d-7e6f5a4b3c2d", "start_node")
    sim.controllers.get(automated).record_activity(AUTOMATION, "user_activity")
    sim.fleet.set_metrics(busy, cpu=55.0)
    patched = await app.client.patch(f"/api/workers/{ids[switched_off]}", json={"auto_pause": False})
    assert patched.status_code == 200 and patched.json()["auto_pause"] is False
    await _cycle(app)
    for worker_id in ids.values():
        await backdate(app, worker_id)
    # Started by hand (stop, then start through the API): snoozed.
    assert (await app.client.post(f"/api/workers/{ids[started_by_hand]}/stop")).status_code == 202
    await _cycle(app)
    assert (await app.client.post(f"/api/workers/{ids[started_by_hand]}/start")).status_code == 202
    await _cycle(app)  # sees idle workers; auto-pause acts on the ones due
    await _cycle(app)  # and once only

    automatic = [a for a in await actions(app) if a["actor"] == AUTO]
    assert sorted((a["worker_id"], a["kind"], a["reason"], a["result"]) for a in automatic) == sorted(
        [(ids[idle], "stop", "idle", "ok"), (ids[automated], "stop", "idle", "ok")]
    )
    succeeded = await actions(app, result="ok")
    assert all(a["result"] == "ok" for a in succeeded)
    assert len([a for a in succeeded if a["actor"] == AUTO]) == 2 and len(succeeded) == 4  # + stop, start
    assert [a["kind"] for a in await actions(app, kind="start")] == ["start"]
    refused = await app.client.get("/api/actions", params={"result": "done"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "result"]
    assert sim.fleet.get(idle).state in ("stopping", "stopped")
    assert sim.fleet.get(automated).state in ("stopping", "stopped")
    for kept in (lab, active, busy, switched_off, started_by_hand):
        assert sim.fleet.get(kept).state == "running", kept
    stopped = await app.worker(ids[idle])
    assert stopped["idle"]["paused_by_us"] is True and stopped["stop_requested_at"] is not None
    snoozed = await app.worker(ids[started_by_hand])
    assert snoozed["idle"]["snoozed_until"] is not None and snoozed["idle"]["pause_at"] is None
    assert (await app.worker(ids[switched_off]))["idle"]["idle"] is True  # idle, just not paused
    assert (await app.worker(ids[active]))["idle"]["idle"] is False
    firing = (await app.client.get("/api/alerts", params={"state": "firing"})).json()["items"]
    assert not [a for a in firing if a["kind"] == "unexpected_stop"]  # our stops are expected
    assert {a["worker_id"] for a in firing if a["kind"] == "idle"} >= {ids[switched_off]}
    text = (await app.client.get("/metrics")).text
    assert 'cml_monitor_actions_total{kind="stop",reason="idle",result="ok"} 2.0' in text
    assert f'cml_monitor_worker_idle{{worker_id="{ids[switched_off]}"' in text
    summary = (await app.client.get("/api/fleet/summary")).json()
    assert summary["workers"] == 7 and summary["idle"] >= 1 and summary["by_status"]["running"] >= 4
    assert summary["policy"] == {
        "cpu_threshold": 90.0,
        "memory_threshold": 90.0,
        "disk_threshold": 90.0,
        "auto_pause_enabled": True,
        "auto_pause_dry_run": False,
        "remediation_enabled": False,
    }


async def test_a_lab_started_during_the_grace_wins_the_race(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, **PAUSE)
    ((instance_id, worker_id),) = (await _register(app, sim, 1)).items()
    quiet(sim, instance_id)
    await _cycle(app)
    await backdate(app, worker_id)
    worker = await app.runtime.repository.get_by_id_async(worker_id)
    assert worker is not None
    # What the last collection said: idle, due for a pause. Then, at the last moment, a lab starts.
    worker.idle = replace(worker.idle, idle=True, idle_since=datetime.now(UTC), pause_at=datetime.now(UTC))
    await app.runtime.repository.update_async(worker)
    event = metrics_event(worker, WorkerStatus.RUNNING)
    sim.set_labs(instance_id, running=1)
    await app.runtime.automatic.observe([event])
    (action,) = await actions(app, worker_id=worker_id)
    assert action["result"] == "skipped" and "1 lab(s) started during the grace" in action["detail"]
    assert sim.fleet.get(instance_id).state == "running"
    assert ("ec2", "StopInstances") not in sim.fleet.requests


async def test_dry_run_records_the_stop_once_and_calls_no_aws_api(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    # A receiver that is never up (a closed loopback port): the outbox row is what is checked.
    app = await monitor(
        sqlite_url,
        worker_auto_pause_dry_run=True,
        worker_notification_webhooks="http://127.0.0.1:9/hook",
        **PAUSE,
    )
    ((instance_id, worker_id),) = (await _register(app, sim, 1)).items()
    quiet(sim, instance_id)
    await _cycle(app)
    await backdate(app, worker_id)
    for _ in range(3):
        await _cycle(app)
    (action,) = await actions(app, worker_id=worker_id)
    assert (action["result"], action["dry_run"], action["actor"]) == ("dry_run", True, AUTO)
    assert not [op for (_, op) in sim.fleet.requests if op in ("StopInstances", "RebootInstances")]
    assert sim.fleet.get(instance_id).state == "running"
    queued = (await app.client.get("/api/notifications")).json()["items"]
    assert [n["event_type"] for n in queued if n["worker_id"] == worker_id].count("worker.action") == 1


async def test_remediation_reboots_once_says_when_it_did_not_help_and_respects_cap_and_silences(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(
        sqlite_url,
        worker_remediation_enabled=True,
        worker_remediation_after_samples=2,
        worker_actions_max_per_hour=1,
    )
    ids = await _register(app, sim, 3)
    broken, capped, silenced = ids
    for instance_id in ids:
        sim.fleet.set_status_checks(instance_id, instance="impaired")
        sim.fleet.get(instance_id).reboot_heals = False
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    silence = {"worker_id": ids[silenced], "kind": "status_check", "ends_at": ends, "comment": "on it"}
    assert (await app.client.post("/api/silences", json=silence)).status_code == 201
    for _ in range(2):
        await _cycle(app)  # two impaired samples: one reboot, and only one (the cap)
    rebooted = [i for i in (broken, capped) if sim.fleet.get(i).reboots]
    assert len(rebooted) == 1 and sim.fleet.get(silenced).reboots == 0
    first = rebooted[0]
    for _ in range(4):
        await _cycle(app)  # impaired again after the reboot: within the cooldown, said, not repeated
    assert sim.fleet.get(first).reboots == 1
    (reboot,) = await actions(app, worker_id=ids[first])
    assert (reboot["kind"], reboot["reason"], reboot["result"]) == (
        "reboot",
        "status_check_impaired",
        "failed",
    )
    assert "did not help" in reboot["detail"]
    firing = (await app.client.get("/api/alerts", params={"state": "firing"})).json()["items"]
    assert ids[first] in {a["worker_id"] for a in firing if a["kind"] == "status_check"}  # the alert stays


async def test_manual_actions_are_recorded_refused_when_the_state_forbids_and_admin_only(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, api_tokens="admin:boss,viewer:peek")
    admin = {"Authorization": "Bearer boss"}
    viewer = {"Authorization": "Bearer peek"}
    instance = sim.add_workers(1, with_controllers=False)[0]
    body = {"name": "w", "aws_region": REGION, "aws_instance_id": instance.instance_id}
    worker_id = (await app.client.post("/api/workers", json=body, headers=admin)).json()["id"]
    await _cycle(app)
    for action in ("stop", "start", "reboot"):
        assert (
            await app.client.post(f"/api/workers/{worker_id}/{action}", headers=viewer)
        ).status_code == 403
    assert (await app.client.get("/api/actions", headers=viewer)).status_code == 200
    refused = await app.client.post(f"/api/workers/{worker_id}/start", headers=admin)
    assert refused.status_code == 409 and "running" in refused.json()["detail"]
    done = await app.client.post(f"/api/workers/{worker_id}/reboot", headers=admin)
    assert done.status_code == 202 and done.json()["result"] == "ok" and done.json()["actor"] != AUTO
    assert sim.fleet.get(instance.instance_id).reboots == 1
    (recorded,) = (await app.client.get("/api/actions", headers=admin)).json()["items"]
    assert recorded["id"] == done.json()["id"] and recorded["reason"] == "manual"


async def test_an_action_interrupted_between_recorded_and_done_is_settled_at_the_next_start(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url)
    ids = await _register(app, sim, 2)
    stopped, untouched = ids
    await _cycle(app)
    store = app.runtime.action_store
    # What `kill -9` between the two steps leaves: pending rows. One stop reached EC2, one did not.
    now = datetime.now(UTC)
    reached = Action.request(ids[stopped], ActionKind.STOP, ActionReason.IDLE, AUTO, dry_run=False, now=now)
    lost = Action.request(ids[untouched], ActionKind.STOP, ActionReason.MANUAL, "ops", dry_run=False, now=now)
    assert await store.record(reached) and await store.record(lost)
    sim.fleet.stop(stopped)
    again = await monitor(sqlite_url)  # the restart, on the same database
    settled = {a["worker_id"]: a for a in await actions(again)}
    assert settled[ids[stopped]]["result"] == "ok" and "interrupted" in settled[ids[stopped]]["detail"]
    assert settled[ids[untouched]]["result"] == "failed" and "running" in settled[ids[untouched]]["detail"]


async def test_two_replicas_seeing_the_same_idle_worker_act_once(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    first = await monitor(sqlite_url, **PAUSE)
    second = await monitor(sqlite_url, **PAUSE)
    ((instance_id, worker_id),) = (await _register(first, sim, 1)).items()
    quiet(sim, instance_id)
    await _cycle(first)
    worker = await first.runtime.repository.get_by_id_async(worker_id)
    assert worker is not None
    now = datetime.now(UTC)
    worker.idle = replace(worker.idle, idle=True, idle_since=now, pause_at=now)
    await first.runtime.repository.update_async(worker)
    event = metrics_event(worker, WorkerStatus.RUNNING)
    await asyncio.gather(*(app.runtime.automatic.observe([event]) for app in (first, second)))
    stops = [a for a in await actions(first, worker_id=worker_id) if a["kind"] == "stop"]
    assert len(stops) == 1 and stops[0]["result"] == "ok"
    assert sim.fleet.requests[("ec2", "StopInstances")] == 1
    executor = first.runtime.executor
    pending = Action.request(worker_id, ActionKind.REBOOT, ActionReason.MANUAL, "a", dry_run=False, now=now)
    assert await first.runtime.action_store.record(pending)
    with pytest.raises(ActionInFlight):
        await executor.run(worker, ActionKind.STOP, ActionReason.MANUAL, "b")
