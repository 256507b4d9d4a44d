"""`cml-monitor demo` as a user runs it: a subprocess, five workers, a first cycle, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from cml_fleet_sim.serving import free_port

from .processes import spawn_cli, stop, wait_until


def test_demo_runs_a_fleet_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT", "DATABASE_URL"))}
    process = spawn_cli(["demo", "--workers", "5", "--port", str(port)], env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:

        def first_cycle_done() -> bool:
            workers = httpx.get(f"{base}/api/workers").json()
            return workers["total"] == 5 and all(w["last_collected_at"] for w in workers["items"])

        wait_until(first_cycle_done, timeout=60)
        workers = httpx.get(f"{base}/api/workers").json()["items"]
        running = [w for w in workers if w["status"] == "running"]
        assert running and all(w["cpu_utilization"] is not None for w in running)
        assert all(w["cml_url"] for w in workers)
        assert {w["aws_region"] for w in workers} == {"us-east-1", "eu-west-1"}
        assert (tmp_path / "data" / "demo" / "cml-monitor.db").exists()
    finally:
        output = stop(process, signal.SIGINT)
    assert process.returncode == 0, output
    assert f"{base}/docs" in output
    assert "Demo stopped" in output


def test_demo_refuses_bad_arguments(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cml_monitor.cli", "demo", "--workers", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr


def test_without_the_simulator_the_demo_says_how_to_install_it(tmp_path: Path) -> None:
    """A production install has no `[sim]` extra: the demo explains, the rest still imports."""
    code = (
        "import sys; sys.modules['cbor2'] = None\n"  # as if the extra were not installed
        "import cml_monitor.api.app, cml_monitor.runtime\n"
        "assert 'cml_fleet_sim' not in sys.modules, 'the service loaded the simulator'\n"
        "from cml_monitor.cli import main\n"
        "raise SystemExit(main(['demo']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "pip install 'cml-monitor[sim]'" in result.stderr
    assert "cbor2" in result.stderr
