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


def test_the_demo_story_auto_pauses_an_idle_worker_and_snoozes_one_started_by_hand(tmp_path: Path) -> None:
    """The demo's story at a faster pace (the same code as `make demo`, shorter timeouts)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT", "DATABASE_URL"))}
    code = (
        "from cml_monitor.demo import DemoTiming, run_demo\n"
        f"raise SystemExit(run_demo(workers=4, port={port}, timing=DemoTiming(poll_interval=1,"
        " idle_timeout=2, idle_check_interval=1, grace=2, start_by_hand_after=1)))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        workers = {}

        def registered() -> bool:
            workers.update({w["name"]: w for w in httpx.get(f"{base}/api/workers").json()["items"]})
            return len(workers) == 4

        wait_until(registered, timeout=60)
        idle, by_hand = sorted(workers.values(), key=lambda w: w["name"][-2:])[:2]  # -01, -02

        def actions(worker_id: str) -> list[dict]:  # type: ignore[type-arg]
            return httpx.get(f"{base}/api/actions", params={"worker_id": worker_id}).json()["items"]

        def paused() -> bool:
            return any(a["reason"] == "idle" and a["result"] == "dry_run" for a in actions(idle["id"]))

        wait_until(paused, timeout=90)
        assert httpx.get(f"{base}/api/workers/{idle['id']}").json()["status"] == "running"  # dry run

        def started_and_snoozed() -> bool:
            started = [a for a in actions(by_hand["id"]) if a["kind"] == "start" and a["reason"] == "manual"]
            seen = httpx.get(f"{base}/api/workers/{by_hand['id']}").json()
            return bool(started) and seen["idle"]["snoozed_until"] is not None

        wait_until(started_and_snoozed, timeout=60)
    finally:
        output = stop(process, signal.SIGINT)
    assert process.returncode == 0, output
    assert "auto-paused (dry run)" in output and "started by hand" in output
