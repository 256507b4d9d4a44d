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


def test_a_busy_port_fails_before_the_banner_with_a_hint(tmp_path: Path) -> None:
    import socket as sockets

    with sockets.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (["serve", "--port", str(port)], ["demo", "--workers", "1", "--port", str(port)]):
            result = subprocess.run(
                [sys.executable, "-m", "cml_monitor.cli", *args],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 2, result.stdout + result.stderr
            assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[0]]  # one line
            assert "already in use" in result.stderr and "--port" in result.stderr
            assert "Dashboard" not in result.stdout  # no banner first


def test_the_demo_moves_to_a_free_port_when_8080_is_taken_and_says_so(tmp_path: Path) -> None:
    from cml_monitor.cli import DEMO_PORT, _port_is_free

    if _port_is_free("127.0.0.1", DEMO_PORT):
        import socket as sockets

        holder = sockets.socket()
        holder.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", DEMO_PORT))
        holder.listen()
    else:
        holder = None  # something else holds it already: the same situation
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT", "DATABASE_URL"))}
    process = spawn_cli(["demo", "--workers", "1"], env, tmp_path)
    try:
        banner: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            banner.append(line)
            if "Dashboard:" in line:
                break
        moved = next(line for line in banner if "is busy" in line)
        new_port = int(moved.split("port ")[-1].split()[0])
        assert new_port != DEMO_PORT
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{new_port}/health").status_code == 200, timeout=60)
    finally:
        output = stop(process, signal.SIGINT)
        if holder is not None:
            holder.close()
    assert process.returncode == 0, output
