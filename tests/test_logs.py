"""What an operator reads in the log: one line per region and cycle (with what it cost), and an
alert logged once when it fires and once when it resolves."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cml_fleet_sim.simulator import FleetSimulator

from . import test_cml_depth
from .conftest import REGION
from .helpers import cycle as _cycle
from .helpers import eventually
from .helpers import register_with_controllers as _register

sim = test_cml_depth.sim  # the simulator fixture, instant transitions


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("cml_monitor") and r.levelno >= logging.INFO
    ]


async def test_a_quiet_cycle_is_one_line_and_an_alert_is_logged_once_each_way(
    sim: FleetSimulator, sqlite_url: str, monitor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = await monitor(sqlite_url)
    ids = await _register(app, sim, 3)

    async def all_collected() -> bool:  # the first collection of a new worker runs at once
        return all([(await app.worker(w))["last_collected_at"] for w in ids.values()])

    await eventually(all_collected)
    for instance_id in ids:
        sim.fleet.set_metrics(instance_id, cpu=20.0, memory=30.0)
    await _cycle(app)

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="cml_monitor"):
        await _cycle(app)
    (line,) = _said(caplog)  # nothing per worker above DEBUG
    assert line.startswith(f"Collected {REGION}: 3 workers (3 running, 0 failed, 0 gone) in ")
    # One DescribeInstanceStatus, one GetMetricData; four CML calls per controller.
    assert line.endswith(" s, 2 AWS and 12 CML calls"), line
    per_worker = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum("Collected metrics for worker" in m for m in per_worker) == 3

    hot = next(iter(ids))
    sim.fleet.set_metrics(hot, cpu=97.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cml_monitor"):
        for _ in range(3):
            await _cycle(app)
        sim.fleet.set_metrics(hot, cpu=20.0)
        for _ in range(2):
            await _cycle(app)
    alert_lines = [m for m in _said(caplog) if "Alert cpu" in m]
    assert alert_lines == [
        f"🚨 Alert cpu firing for worker {ids[hot]}",
        f"🚨 Alert cpu resolved for worker {ids[hot]}",
    ]
    assert sum(m.startswith(f"Collected {REGION}") for m in _said(caplog)) == 5
