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
from cml_monitor.actions import ActionExecutor, ActionInFlight
from cml_monitor.domain import WorkerStatus
from cml_monitor.domain.actions import AUTO, Action, ActionKind, ActionReason
from cml_monitor.monitoring.collector import metrics_event

from .conftest import REGION, Monitor
from .helpers import actions, backdate, quiet
from .helpers import cycle as _cycle
from .helpers import register_with_controllers as _register

AUTOMATION = "00000000-0000-4000-a000-000000000001"


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=9)
    simulator.start()
    yield simulator
    simulator.stop()


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
    paused = await again.worker(ids[stopped])  # an auto-pause EC2 did: paused by us, as if finished
    assert (
        paused["idle"]["paused_by_us"] is True
        and (await again.worker(ids[untouched]))["idle"]["paused_by_us"] is False
    )


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


class DiesAfterTheAwsCall:
    """EC2 as an executor sees it, from a replica that is killed (-9) right after the AWS call."""

    def __init__(self, aws: Any) -> None:
        self._aws = aws
        self.called = asyncio.Event()

    async def change_instance_state(self, aws_region: str, instance_id: str, action: str) -> str:
        await self._aws.change_instance_state(aws_region, instance_id, action)
        self.called.set()
        await asyncio.Event().wait()  # never returns: the test cancels the run, as kill -9 would
        raise AssertionError("unreachable")

    async def describe_instance_statuses(self, aws_region: str, instance_ids: Any) -> dict[str, Any]:
        return await self._aws.describe_instance_statuses(aws_region, instance_ids)


async def eventually_pending(app: Monitor, worker_id: str) -> Action:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        found = [a for a in await app.runtime.action_store.pending() if a.worker_id == worker_id]
        if found:
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, "the action was never recorded"
        await asyncio.sleep(0.01)


async def test_a_starting_replica_leaves_a_live_replicas_action_alone_until_its_lease_expired(
    sim: FleetSimulator, postgresql_url: str, monitor: Any
) -> None:
    first = await monitor(postgresql_url)
    ((instance_id, worker_id),) = (await _register(first, sim, 1)).items()
    await _cycle(first)
    worker = await first.runtime.repository.get_by_id_async(worker_id)
    assert worker is not None
    go_on = asyncio.Event()

    async def last_check() -> str | None:  # replica A is between "recorded" and the AWS call
        await go_on.wait()
        return None

    a = first.runtime.executor
    acting = asyncio.ensure_future(
        a.run(worker, ActionKind.STOP, ActionReason.MANUAL, "ops", last_check=last_check)
    )
    pending = await eventually_pending(first, worker_id)
    assert pending.owner == a.owner and pending.lease_until is not None
    second = await monitor(postgresql_url)  # replica B starts (rolling restart): reconciles at start
    b = second.runtime.executor
    assert b.owner != a.owner
    assert await b.reconcile() == 0
    assert [p.id for p in await second.runtime.action_store.pending()] == [pending.id]
    with pytest.raises(ActionInFlight):  # the one-pending-action guard still holds for B
        await b.run(worker, ActionKind.STOP, ActionReason.MANUAL, "b")
    go_on.set()  # A finishes its own action
    done = await acting
    assert done.result.value == "ok" and sim.fleet.requests[("ec2", "StopInstances")] == 1
    (stop,) = [x for x in await actions(second, worker_id=worker_id) if x["kind"] == "stop"]
    assert stop["result"] == "ok" and "interrupted" not in stop["detail"]

    # A dies (kill -9) while its next action is pending: B leaves it while the lease runs ...
    sim.fleet.start(instance_id)
    await _cycle(first)
    worker = await first.runtime.repository.get_by_id_async(worker_id)
    assert worker is not None and worker.ec2_instance_state == "running"
    go_on.clear()
    acting = asyncio.ensure_future(
        a.run(worker, ActionKind.STOP, ActionReason.MANUAL, "ops", last_check=last_check)
    )
    pending = await eventually_pending(first, worker_id)
    acting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await acting
    assert await b.reconcile() == 0
    # ... and settles it once the lease has expired (B's clock after A's lease).
    assert pending.lease_until is not None
    later = ActionExecutor(
        second.runtime.action_store,
        second.runtime.repository,
        second.runtime.aws,
        clock=lambda: pending.lease_until + timedelta(seconds=1),  # type: ignore[operator]
    )
    assert await later.reconcile() == 1
    settled = [x for x in await actions(second, worker_id=worker_id) if x["id"] == pending.id]
    assert settled[0]["result"] == "failed" and "interrupted before the AWS call" in settled[0]["detail"]
    assert await second.runtime.action_store.pending() == []


async def test_a_running_action_renews_its_lease_and_a_reconciled_auto_pause_is_paused_by_us(
    sim: FleetSimulator, postgresql_url: str, monitor: Any
) -> None:
    first = await monitor(postgresql_url)
    ((instance_id, worker_id),) = (await _register(first, sim, 1)).items()
    await _cycle(first)
    worker = await first.runtime.repository.get_by_id_async(worker_id)
    assert worker is not None and worker.idle.paused_by_us is False
    aws = DiesAfterTheAwsCall(first.runtime.aws)
    a = ActionExecutor(
        first.runtime.action_store, first.runtime.repository, aws, lease=timedelta(seconds=0.3)
    )
    acting = asyncio.ensure_future(a.run(worker, ActionKind.STOP, ActionReason.IDLE, AUTO))
    await asyncio.wait_for(aws.called.wait(), 10)
    recorded = await eventually_pending(first, worker_id)
    assert recorded.lease_until is not None
    deadline = asyncio.get_running_loop().time() + 10
    while (await eventually_pending(first, worker_id)).lease_until == recorded.lease_until:
        assert asyncio.get_running_loop().time() < deadline, "the lease was never renewed"
        await asyncio.sleep(0.05)
    acting.cancel()  # kill -9 mid-stop: EC2 got the stop, the monitor recorded nothing more
    with pytest.raises(asyncio.CancelledError):
        await acting
    left = await eventually_pending(first, worker_id)
    assert left.lease_until is not None
    stale = await first.runtime.repository.get_by_id_async(worker_id)
    assert stale is not None and stale.idle.paused_by_us is False
    # Replica B (its own executor on the same database), reconciling once A's lease ran out.
    b = ActionExecutor(
        first.runtime.action_store,
        first.runtime.repository,
        first.runtime.aws,
        clock=lambda: left.lease_until + timedelta(seconds=1),  # type: ignore[operator]
    )
    assert await b.reconcile() == 1
    ((stop),) = [x for x in await actions(first, worker_id=worker_id) if x["kind"] == "stop"]
    assert stop["result"] == "ok" and "interrupted" in stop["detail"]
    reconciled = await first.runtime.repository.get_by_id_async(worker_id)
    assert reconciled is not None and reconciled.idle.paused_by_us is True
    assert reconciled.stop_requested_at is not None  # so the stop is not "unexpected" either
    assert sim.fleet.get(instance_id).state == "stopped"
