"""`cml-monitor serve` as a real subprocess: register over HTTP, see telemetry and SSE, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from cml_fleet_sim.serving import free_port

from .conftest import REGION, Moto
from .helpers import cpu, memory
from .processes import spawn_cli, stop, wait_until


def test_serve_end_to_end(moto: Moto, tmp_path: Path) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 42.0)
    memory(moto, instance, 61.5)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}",
        "AWS_ENDPOINT_URL": moto.url,
        "WORKER_METRICS_POLL_INTERVAL": "2",
        "CML_MONITOR_PORT": str(port),
        "LOG_FILE": str(tmp_path / "monitor.log"),
    }
    process = spawn_cli(["serve"], env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/health").status_code == 200)
        events: list[dict] = []
        connected = threading.Event()

        def listen() -> None:
            with httpx.stream("GET", f"{base}/api/events", timeout=30) as stream:
                connected.set()
                event = None
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "metrics":
                        events.append(json.loads(line.split(":", 1)[1]))
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert connected.wait(10)
        # Events come every 2 s: a first one missed while subscribing is followed by another.
        body = {"name": "e2e", "aws_region": REGION, "aws_instance_id": instance}
        created = httpx.post(f"{base}/api/workers", json=body)
        assert created.status_code == 201
        worker_id = created.json()["id"]
        wait_until(lambda: httpx.get(f"{base}/api/workers/{worker_id}").json()["last_collected_at"])
        worker = httpx.get(f"{base}/api/workers/{worker_id}").json()
        assert (worker["status"], worker["cpu_utilization"], worker["memory_utilization"]) == (
            "running",
            42.0,
            61.5,
        )
        listener.join(15)
        assert events and events[0]["worker_id"] == worker_id
        assert events[0]["metrics"] == {"cpu_utilization": 42.0, "memory_utilization": 61.5}
    finally:
        output = stop(process, signal.SIGTERM)
    assert process.returncode == 0, output
    assert "Worker monitoring stopped" in output
    log = (tmp_path / "monitor.log").read_text(encoding="utf-8")
    assert f"Registered worker {worker_id}" in log and "Worker monitoring stopped" in log


def test_serve_with_a_bad_setting_says_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    env = {**os.environ, "WORKER_METRICS_POLL_INTERVAL": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "cml_monitor.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "WORKER_METRICS_POLL_INTERVAL" in result.stderr


def test_help_explains_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cml_monitor.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in ("serve", "migrate", "check-config"):
        assert command in result.stdout
