"""Before an automatic pause, the controller's users are told (a CML system notice), on the
simulator's EC2 and controllers; the notice goes when the worker is used again or paused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.domain import WorkerStatus
from cml_monitor.monitoring.collector import metrics_event

from .conftest import Monitor
from .helpers import actions, backdate, quiet
from .helpers import cycle as _cycle
from .helpers import register_with_controllers as _register


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=11)
    simulator.start()
    yield simulator
    simulator.stop()


GRACE = {"worker_auto_pause_enabled": True, "worker_auto_pause_grace": 600, "worker_idle_timeout": 3600}


async def _idle_in_grace(app: Monitor, sim: FleetSimulator) -> tuple[str, str]:
    ((instance_id, worker_id),) = (await _register(app, sim, 1)).items()
    quiet(sim, instance_id)
    await _cycle(app)
    await backdate(app, worker_id)
    await _cycle(app)  # idle now: the grace starts
    return instance_id, worker_id


async def _due_now(app: Monitor, worker_id: str) -> None:
    """The grace has run out (as if its ten minutes had passed): the next look pauses it."""
    worker = await app.runtime.repository.get_by_id_async(worker_id)
    assert worker is not None
    worker.idle = replace(worker.idle, pause_at=datetime.now(UTC))
    await app.runtime.repository.update_async(worker)
    await app.runtime.automatic.observe([metrics_event(worker, WorkerStatus.RUNNING)])


async def test_a_notice_says_when_and_why_and_goes_with_the_pause(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, **GRACE)
    instance_id, worker_id = await _idle_in_grace(app, sim)
    controller = sim.controllers.get(instance_id)
    (notice,) = controller.notices.values()
    worker = await app.worker(worker_id)
    pause_at = datetime.fromisoformat(worker["idle"]["pause_at"])
    assert notice["level"] == "WARNING" and notice["enabled"] is True
    assert f"{pause_at:%H:%M} UTC" in notice["label"]
    assert "start a lab" in notice["content"] and "paused" in notice["content"]
    await _cycle(app)
    assert len(controller.notices) == 1  # posted once per grace

    await _due_now(app, worker_id)
    assert controller.notices == {}  # removed right before the stop
    (stop,) = [a for a in await actions(app) if a["kind"] == "stop"]
    assert stop["result"] == "ok" and f"CML system notice {notice['id']}, removed" in stop["detail"]
    assert sim.fleet.get(instance_id).state in ("stopping", "stopped")


async def test_the_notice_goes_when_the_worker_is_used_again(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, **GRACE)
    instance_id, worker_id = await _idle_in_grace(app, sim)
    controller = sim.controllers.get(instance_id)
    assert len(controller.notices) == 1
    sim.set_labs(instance_id, running=1)  # somebody starts a lab
    await _cycle(app)
    assert controller.notices == {}
    assert (await app.worker(worker_id))["idle"]["pause_at"] is None
    assert sim.fleet.get(instance_id).state == "running"


async def test_a_dry_run_posts_nothing(sim: FleetSimulator, sqlite_url: str, monitor: Any) -> None:
    app = await monitor(sqlite_url, **GRACE, worker_auto_pause_dry_run=True)
    instance_id, worker_id = await _idle_in_grace(app, sim)
    assert (await app.worker(worker_id))["idle"]["pause_at"] is not None
    assert sim.controllers.get(instance_id).notices == {}


async def test_switched_off_posts_nothing(sim: FleetSimulator, sqlite_url: str, monitor: Any) -> None:
    app = await monitor(sqlite_url, **GRACE, worker_auto_pause_notice=False)
    instance_id, worker_id = await _idle_in_grace(app, sim)
    assert (await app.worker(worker_id))["idle"]["pause_at"] is not None
    assert sim.controllers.get(instance_id).notices == {}


async def test_a_notice_that_fails_never_holds_the_pause_back(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    # The monitor's account is not an administrator here: CML refuses its notices (403).
    sim.controllers.add_user("viewer", "viewer-pw")
    app = await monitor(sqlite_url, **GRACE, cml_username="viewer", cml_password="viewer-pw")
    instance_id, worker_id = await _idle_in_grace(app, sim)
    controller = sim.controllers.get(instance_id)
    assert controller.notices == {}
    assert (await app.worker(worker_id))["idle"]["pause_at"] is not None
    await _due_now(app, worker_id)
    (stop,) = [a for a in await actions(app) if a["kind"] == "stop"]
    assert stop["result"] == "ok" and "notice" not in stop["detail"]
