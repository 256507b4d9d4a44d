"""What an operator reads in the log: one line per region and cycle (with what it cost), an
alert logged once when it fires and once when it resolves (naming the worker and the figures),
structured fields for a shipper, quiet probes, and one line when the start-up fails."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cml_fleet_sim.serving import free_port
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.telemetry import JsonFormatter, install_log_filters, structured_fields

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
    alert_records = [r for r in caplog.records if r.getMessage().startswith("Alert cpu")]
    assert [(r.levelname, r.getMessage()) for r in alert_records] == [
        ("WARNING", f"Alert cpu firing on {hot[-6:]} ({hot}): value 97, threshold 90"),
        ("INFO", f"Alert cpu resolved on {hot[-6:]} ({hot}): value 20, threshold 90"),
    ]
    fired = structured_fields(alert_records[0])
    assert fired["worker_id"] == ids[hot] and fired["worker_name"] == hot[-6:]
    assert (fired["instance_id"], fired["region"], fired["kind"]) == (hot, REGION, "cpu")
    assert (fired["value"], fired["threshold"], fired["severity"]) == (97.0, 90.0, "warning")
    cycles = [r for r in caplog.records if r.getMessage().startswith(f"Collected {REGION}")]
    assert len(cycles) == 5
    cycle = structured_fields(cycles[0])
    assert cycle["region"] == REGION
    assert cycle["cycle"]["workers"] == 3 and cycle["cycle"]["aws_calls"] == 2  # type: ignore[index]


def test_json_lines_carry_the_structured_fields() -> None:
    record = logging.getLogger("cml_monitor.alerts.engine").makeRecord(
        "cml_monitor.alerts.engine",
        logging.WARNING,
        __file__,
        1,
        "Alert %s firing on %s",
        ("cpu", "lab-1"),
        None,
        extra={"worker_id": "w-1", "worker_name": "lab-1", "kind": "cpu", "cycle": {"workers": 3}},
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "Alert cpu firing on lab-1" and line["level"] == "WARNING"
    assert (line["worker_id"], line["worker_name"], line["kind"]) == ("w-1", "lab-1", "cpu")
    assert line["cycle"] == {"workers": 3}
    assert set(line) == {"time", "level", "logger", "message", "worker_id", "worker_name", "kind", "cycle"}


def test_probe_access_lines_are_debug_and_other_requests_info(caplog: pytest.LogCaptureFixture) -> None:
    install_log_filters()
    access = logging.getLogger("uvicorn.access")
    args = ("127.0.0.1:5000", "GET", "/metrics", "1.1", 200)
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        for path in ("/health", "/ready", "/metrics?x=1", "/api/workers"):
            access.info('%s - "%s %s HTTP/%s" %d', *args[:2], path, *args[3:])
    assert [r.getMessage().split('"')[1] for r in caplog.records] == ["GET /api/workers HTTP/1.1"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="uvicorn.access"):
        access.info('%s - "%s %s HTTP/%s" %d', *args)
    assert [r.levelname for r in caplog.records] == ["DEBUG"]


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CML_MONITOR_PORT": str(free_port()), **env}
    return subprocess.run(
        [sys.executable, "-m", "cml_monitor.cli", "serve"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_database_down_at_start_up_is_one_json_line_without_traceback(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    database = f"postgresql+asyncpg://monitor:s3cret@127.0.0.1:{closed}/cml"
    result = _serve(tmp_path, DATABASE_URL=database, LOG_FORMAT="json", DATABASE_TIMEOUT="2")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0]["message"].startswith(
        "Cannot start: the database postgresql+asyncpg://monitor:***@127.0.0.1:"
    )
    assert "s3cret" not in output and "Traceback" not in output and "exception" not in errors[0]

    debug = _serve(tmp_path, DATABASE_URL=database, LOG_LEVEL="DEBUG", DATABASE_TIMEOUT="2")
    assert debug.returncode != 0 and "Traceback" in debug.stdout + debug.stderr


def test_a_bad_setting_is_one_json_line_when_json_is_asked(tmp_path: Path) -> None:
    result = _serve(tmp_path, LOG_FORMAT="json", WORKER_METRICS_POLL_INTERVAL="0")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and "WORKER_METRICS_POLL_INTERVAL" in entry["message"]
