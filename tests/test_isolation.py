"""Isolation of bad values: one hostile answer, or one row the database refuses, costs only its
own worker. On real PostgreSQL, which refuses a NUL in text (SQLite stores it)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.domain import Alert, AlertKind, AlertState, MetricSample, OutboxMessage, Worker
from cml_monitor.storage import CMLWorkerRepository, StorageError, create_engine, migrate
from cml_monitor.storage.alerts import AlertRepository
from cml_monitor.storage.tables import alerts, notifications, worker_metrics, workers

from .conftest import REGION, Monitor
from .helpers import register_with_controllers

NUL_OR_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]|\\u000[0-8bcef]|\\u001[0-9a-f]", re.IGNORECASE)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


# -- batches the database refuses: only the offending worker's rows are dropped ------------------


def _worker(n: int) -> Worker:
    return Worker.register(
        name=f"w{n}", aws_region=REGION, aws_instance_id=f"i-{n:017x}", now=NOW - timedelta(hours=1)
    )


async def test_a_cycle_with_refused_rows_stores_every_other_worker_and_counts_each_refusal(
    postgresql_url: str,
) -> None:
    rejected: list[str] = []
    engine = create_engine(postgresql_url)
    try:
        await migrate(engine)
        repository = CMLWorkerRepository(engine, on_rejected=rejected.append)
        cycle = [await repository.add_async(_worker(n)) for n in range(4)]
        for worker in cycle:
            worker.update_ec2_state(
                instance_state="running", system_status="ok", instance_status="ok", now=NOW
            )
            worker.update_telemetry(
                cpu_utilization=50.0, memory_utilization=20.0, active_labs_count=1, now=NOW
            )
        # Sanitising bypassed: values PostgreSQL really refuses, one worker each.
        cycle[1].ec2_system_status_check = "ok\x00"  # NUL in a text column
        samples = [MetricSample(w.id, NOW, "running", 50.0, 20.0, 1) for w in cycle]
        samples[2] = MetricSample(cycle[2].id, NOW, "x" * 40, 50.0, 20.0, 1)  # too long for its column
        written = await repository.save_collection_async(cycle, samples)
        # A worker's row and its history are written together: both go when either is refused.
        assert written == {cycle[0].id, cycle[3].id}
        assert sorted(rejected) == ["worker_metrics", "workers"]
        async with engine.connect() as conn:
            collected = dict((await conn.execute(select(workers.c.id, workers.c.last_collected_at))).all())
            history = set((await conn.execute(select(worker_metrics.c.worker_id))).scalars())
        assert collected[cycle[1].id] is collected[cycle[2].id] is None and collected[cycle[3].id] == NOW
        assert history == {cycle[0].id, cycle[3].id}
    finally:
        await engine.dispose()


def _alert(worker_id: str, detail: str) -> Alert:
    return Alert(
        id=str(uuid.uuid4()),
        worker_id=worker_id,
        kind=AlertKind.CML_UNHEALTHY,
        state=AlertState.FIRING,
        value=None,
        threshold=None,
        violations=1,
        started_at=NOW,
        updated_at=NOW,
        fired_at=NOW,
        detail=detail,
    )


def _message(alert: Alert, ordinal: int) -> OutboxMessage:
    return OutboxMessage(
        id=str(uuid.uuid4()),
        alert_id=alert.id,
        worker_id=alert.worker_id,
        event_type="alert.firing",
        channel="webhook",
        target="http://127.0.0.1:9/hook",
        payload=json.dumps({"detail": alert.detail}),
        created_at=NOW,
        ordinal=ordinal,
    )


async def test_alerts_refused_for_one_worker_do_not_silence_the_others(postgresql_url: str) -> None:
    rejected: list[str] = []
    engine = create_engine(postgresql_url)
    try:
        await migrate(engine)
        store = AlertRepository(engine, on_rejected=rejected.append)
        good, bad, other = (
            _alert("w-good", "cpu at 97 %"),
            _alert("w-bad", "unhealthy computes: a\x00b"),
            _alert("w-other", "disk"),
        )
        outbox = [_message(a, n) for n, a in enumerate((good, bad, other))]
        await store.apply([good, bad, other], [], [], outbox)
        assert rejected == ["alerts"]
        async with engine.connect() as conn:
            stored = set((await conn.execute(select(alerts.c.worker_id))).scalars())
            queued = set((await conn.execute(select(notifications.c.worker_id))).scalars())
        assert stored == queued == {"w-good", "w-other"}  # the bad worker's message went with its alert
    finally:
        await engine.dispose()


async def test_a_database_that_is_down_is_not_a_refusal() -> None:
    """A connection error goes up at once: nothing is retried row by row, nothing counted."""
    rejected: list[str] = []
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none", timeout=2)
    try:
        repository = CMLWorkerRepository(engine, on_rejected=rejected.append)
        worker = _worker(1)
        worker.update_telemetry(cpu_utilization=1.0, memory_utilization=1.0, active_labs_count=0, now=NOW)
        with pytest.raises((OSError, StorageError)):  # refused connection: as before, no retry
            await repository.save_collection_async([worker], [])
        assert rejected == []
    finally:
        await engine.dispose()


# -- a hostile controller on PostgreSQL: its region still alerts in the same cycle --------------


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=5)
    simulator.start()
    yield simulator
    simulator.stop()


async def _register(app: Monitor, sim: FleetSimulator, count: int) -> list[tuple[str, str]]:
    """(instance id, worker id) of new workers, each with its simulated controller."""
    return list((await register_with_controllers(app, sim, count)).items())


async def _one_cycle(app: Monitor) -> dict[tuple[str, str], dict[str, Any]]:
    run = await app.runtime.monitor.run_region(REGION)
    assert run.report is not None and not run.report.failed, run.report
    items = (await app.client.get("/api/alerts", params={"state": "firing"})).json()["items"]
    return {(a["worker_id"], a["kind"]): a for a in items}


async def _rejected(app: Monitor) -> dict[str, float]:
    exposition = (await app.client.get("/metrics")).text
    found = re.findall(r'^cml_monitor_rejected_rows_total\{table="(\w+)"\} (\S+)$', exposition, re.MULTILINE)
    return {table: float(value) for table, value in found}


async def test_a_hostile_controller_costs_nothing_to_its_region(
    sim: FleetSimulator, postgresql_url: str, monitor: Any
) -> None:
    app = await monitor(postgresql_url)
    assert await _rejected(app) == dict.fromkeys(
        ("workers", "worker_metrics", "alerts", "notifications"), 0.0
    )
    (hostile_instance, hostile), (hot_instance, hot) = await _register(app, sim, 2)
    controller = sim.controllers.get(hostile_instance)
    real_activity = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    controller.record_activity("alice", at=real_activity)
    controller.make_hostile()
    sim.fleet.set_metrics(hot_instance, cpu=97.0)

    firing = await _one_cycle(app)
    assert firing[(hot, "cpu")]["value"] == 97.0  # the same cycle, the same region
    unhealthy = firing[(hostile, "cml_unhealthy")]["detail"]
    assert "cml-compute[31m-2" in unhealthy and not NUL_OR_CONTROL.search(unhealthy)

    worker = await app.worker(hostile)
    cml = worker["cml"]
    assert cml["license_registration"] == "COMPLETED" and cml["license_authorization"] == "IN_COMPLIANCE"
    assert {c["hostname"] for c in cml["computes"]} == {"cml-controller", "cml-compute[31m-2"}
    assert cml["last_user_activity_at"] == real_activity.isoformat().replace("+00:00", "Z")
    assert worker["idle"]["last_user_activity_at"] == cml["last_user_activity_at"]
    engine = app.runtime.repository.engine
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT cml::text, idle::text FROM workers WHERE id = :id"), {"id": hostile}
            )
        ).one()
        details = (await conn.execute(select(alerts.c.detail))).scalars().all()
    assert not NUL_OR_CONTROL.search(stored[0] + stored[1]) and "9999" not in stored[0] + stored[1]
    assert not any(NUL_OR_CONTROL.search(d or "") for d in details)
    assert sum((await _rejected(app)).values()) == 0  # cleaned at the edge: nothing to refuse


async def test_with_cleaning_bypassed_the_refused_worker_is_dropped_and_counted_the_region_alerts(
    sim: FleetSimulator, postgresql_url: str, monitor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence, end to end: the controller's NUL reaches the alert's detail,
    PostgreSQL refuses that row, and only that worker's alerts are dropped."""
    monkeypatch.setattr("cml_monitor.cml.client.clean_deep", lambda body: body)
    app = await monitor(postgresql_url)
    (hostile_instance, hostile), (hot_instance, hot) = await _register(app, sim, 2)
    sim.controllers.get(hostile_instance).make_hostile()
    sim.fleet.set_metrics(hot_instance, cpu=97.0)
    firing = await _one_cycle(app)
    assert (hot, "cpu") in firing
    assert not any(worker_id == hostile for worker_id, _ in firing)
    # At least once: the collection registration starts may evaluate the same worker meanwhile.
    assert (await _rejected(app))["alerts"] >= 1.0


# -- requests: a control character is a 422 naming the field, not a 503 from PostgreSQL --------


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/api/actions", {"worker_id": "a\x00b"}, ["query", "worker_id"]),
        ("/api/actions", {"kind": "stop", "result": "ok\x1b"}, ["query", "result"]),
        ("/api/workers", {"q": "cml\x00"}, ["query", "q"]),
        ("/api/alerts/abc%00def", {}, ["path"]),
    ],
)
async def test_a_control_character_in_the_query_or_path_is_a_422_naming_it(
    api_factory: Any, postgresql_url: str, path: str, params: dict[str, str], loc: list[str]
) -> None:
    api = await api_factory(database_url=postgresql_url)
    response = await api.client.get(path, params=params)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == loc and "control character U+00" in detail["msg"]


async def test_a_control_character_in_a_body_field_is_a_422_naming_it(
    api_factory: Any, postgresql_url: str
) -> None:
    api = await api_factory(database_url=postgresql_url)
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    silence = {"kind": "cpu", "ends_at": until, "comment": "maintenance\x00window"}
    response = await api.client.post("/api/silences", json=silence)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["body", "comment"] and "U+0000" in detail["msg"]
    tags = {"aws_region": REGION, "tags": {"team\x07": "x"}}
    response = await api.client.post("/api/workers/import", json=tags)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == ["body", "tags"]
    # Line breaks and tabs are text: a multi-line comment is stored as typed.
    silence["comment"] = "maintenance\r\n\twindow"
    created = await api.client.post("/api/silences", json=silence)
    assert created.status_code == 201 and created.json()["comment"] == "maintenance\r\n\twindow"
