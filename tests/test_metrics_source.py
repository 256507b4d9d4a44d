"""CPU and memory from the controller's `system_stats` (free, live) where it answered this cycle,
CloudWatch for the others (billed per metric requested), on the simulator's EC2, CloudWatch and
controllers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cml_fleet_sim.simulator import FleetSimulator

from .conftest import REGION, Monitor
from .helpers import cycle as _cycle
from .helpers import register_with_controllers as _register


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=5)
    simulator.start()
    yield simulator
    simulator.stop()


async def _setup(app: Monitor, sim: FleetSimulator) -> tuple[str, str, str]:
    """A worker with a controller (one lab running), and one without: (instance, worker, worker)."""
    ((instance_id, with_controller),) = (await _register(app, sim, 1)).items()
    sim.set_labs(instance_id, running=1)  # the controller says CPU 13 %, memory (8 + 16) / 256 GiB
    sim.fleet.set_metrics(instance_id, cpu=71.0, memory=44.0)  # what CloudWatch says
    (bare,) = sim.add_workers(1, with_controllers=False)
    sim.fleet.set_metrics(bare.instance_id, cpu=12.5, memory=33.0)
    response = await app.client.post(
        "/api/workers", json={"name": "bare", "aws_region": REGION, "aws_instance_id": bare.instance_id}
    )
    assert response.status_code == 201, response.text
    return instance_id, with_controller, response.json()["id"]


def _metrics_requested(app: Monitor) -> int:
    return int(app.runtime.aws.requests.metrics_requested)


async def test_auto_takes_the_controllers_figures_and_asks_cloudwatch_only_for_the_rest(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, worker_metrics_source="auto")  # the default
    instance_id, with_controller, bare = await _setup(app, sim)
    await _cycle(app)  # the first sight of the workers (their state changes) is not a steady cycle
    before = _metrics_requested(app)
    run = await app.runtime.monitor.run_region(REGION)
    assert run.report is not None and not run.report.failed
    events = [e.to_json() for e in run.report.events]
    one_worker = _metrics_requested(app) - before  # the worker without a controller only
    assert one_worker > 0
    worker = await app.worker(with_controller)
    assert worker["metrics_source"] == "controller"
    assert worker["cpu_utilization"] == pytest.approx(13.0)
    assert worker["memory_utilization"] == pytest.approx(100 * 24 / 256, abs=0.01)
    other = await app.worker(bare)
    assert other["metrics_source"] == "cloudwatch" and other["cpu_utilization"] == pytest.approx(12.5)
    by_worker = {e["worker_id"]: e for e in events}
    assert by_worker[with_controller]["metrics_source"] == "controller"
    assert by_worker[bare]["metrics_source"] == "cloudwatch"
    assert set(by_worker[bare]["metrics"]) == {"cpu_utilization", "memory_utilization"}  # unchanged

    # The controller stops answering: CloudWatch again, in the same cycle.
    sim.controllers.get(instance_id).unreachable = True
    before = _metrics_requested(app)
    await _cycle(app)
    assert _metrics_requested(app) - before == 2 * one_worker  # both workers from CloudWatch now
    worker = await app.worker(with_controller)
    assert worker["metrics_source"] == "cloudwatch" and worker["cpu_utilization"] == pytest.approx(71.0)


async def test_cloudwatch_only_reads_every_worker_from_cloudwatch(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, worker_metrics_source="cloudwatch")
    _instance_id, with_controller, bare = await _setup(app, sim)
    await _cycle(app)
    before = _metrics_requested(app)
    await _cycle(app)
    assert _metrics_requested(app) - before > 0
    worker = await app.worker(with_controller)
    assert worker["metrics_source"] == "cloudwatch" and worker["cpu_utilization"] == pytest.approx(71.0)
    assert (await app.worker(bare))["metrics_source"] == "cloudwatch"


async def test_controller_only_never_asks_cloudwatch(
    sim: FleetSimulator, sqlite_url: str, monitor: Any
) -> None:
    app = await monitor(sqlite_url, worker_metrics_source="controller")
    _instance_id, with_controller, bare = await _setup(app, sim)
    await _cycle(app)
    before = _metrics_requested(app)
    await _cycle(app)
    assert _metrics_requested(app) - before == 0
    assert (await app.worker(with_controller))["metrics_source"] == "controller"
    other = await app.worker(bare)
    assert other["metrics_source"] is None and other["cpu_utilization"] is None


async def test_a_bad_metrics_source_names_the_setting() -> None:
    from cml_monitor.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, worker_metrics_source="prometheus")
    assert "WORKER_METRICS_SOURCE" in str(caught.value)
