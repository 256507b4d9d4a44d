"""`cml-monitor serve` in two processes: the collector child is restarted after a kill -9 while
the API keeps answering, SIGTERM stops both, and the child's events reach the parent's SSE."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from cml_fleet_sim.serving import free_port

from .conftest import REGION, Moto
from .helpers import cpu
from .processes import spawn_cli, stop, wait_until


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc; zombies are not counted)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _serve(moto: Moto, tmp_path: Path, event_bus_url: str = "") -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}",
        "AWS_ENDPOINT_URL": moto.url,
        "WORKER_METRICS_POLL_INTERVAL": "2",
        "CML_MONITOR_PORT": str(port),
        "EVENT_BUS_URL": event_bus_url,
    }
    env.pop("BACKGROUND_JOB_STORE_URL", None)
    return spawn_cli(["serve"], env, tmp_path), f"http://127.0.0.1:{port}"


def test_the_collector_child_is_restarted_after_a_kill_and_the_api_answers_meanwhile(
    moto: Moto, tmp_path: Path
) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 37.0)
    process, base = _serve(moto, tmp_path)
    try:
        wait_until(lambda: httpx.get(f"{base}/ready").status_code == 200, timeout=60)
        ready = httpx.get(f"{base}/ready").json()["checks"]
        assert ready["collector"] == "ok" and ready["job_store"] == "ok"
        (child,) = children_of(process.pid)
        body = {"name": "k9", "aws_region": REGION, "aws_instance_id": instance}
        worker = httpx.post(f"{base}/api/workers", json=body).json()
        wait_until(lambda: httpx.get(f"{base}/api/workers/{worker['id']}").json()["last_collected_at"])

        os.kill(child, signal.SIGKILL)
        wait_until(lambda: not alive(child), timeout=10)
        # The API answers while the collector is away, and /ready says why it is not ready.
        wait_until(lambda: "restarting" in httpx.get(f"{base}/ready").json()["checks"]["collector"])
        missing = httpx.get(f"{base}/ready")
        assert missing.status_code == 503
        listed = httpx.get(f"{base}/api/workers")
        assert listed.status_code == 200 and listed.json()["total"] == 1

        wait_until(lambda: [p for p in children_of(process.pid) if p != child], timeout=60)
        wait_until(lambda: httpx.get(f"{base}/ready").status_code == 200, timeout=60)
        # The new child collects: the worker's collection time moves on.
        seen = httpx.get(f"{base}/api/workers/{worker['id']}").json()["last_collected_at"]
        wait_until(
            lambda: httpx.get(f"{base}/api/workers/{worker['id']}").json()["last_collected_at"] != seen,
            timeout=30,
        )
    finally:
        output = stop(process, signal.SIGTERM)
    assert process.returncode == 0, output
    assert "restarting it in" in output


def test_sigterm_stops_both_processes(moto: Moto, tmp_path: Path) -> None:
    process, base = _serve(moto, tmp_path)
    try:
        wait_until(lambda: httpx.get(f"{base}/ready").status_code == 200, timeout=60)
        (child,) = children_of(process.pid)
    finally:
        output = stop(process, signal.SIGTERM)
    assert process.returncode == 0, output
    assert not alive(child)
    assert "[collector]" in output and "Worker monitoring stopped" in output
    assert "The collector process stopped" in output


@pytest.mark.parametrize("bus", ["local", "redis"])
def test_an_sse_client_of_serve_receives_what_the_child_collects(
    moto: Moto, tmp_path: Path, bus: str, request: pytest.FixtureRequest
) -> None:
    """Over the local channel, or over Redis when `EVENT_BUS_URL` is set (several machines)."""
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 64.0)
    event_bus_url = request.getfixturevalue("redis_url") if bus == "redis" else ""
    process, base = _serve(moto, tmp_path, event_bus_url)
    try:
        wait_until(lambda: httpx.get(f"{base}/ready").status_code == 200, timeout=60)
        events: list[dict] = []
        connected, got = threading.Event(), threading.Event()

        def listen() -> None:
            # The dashboard's stream: each event is the worker, built from the child's event.
            with httpx.stream("GET", f"{base}/api/events?shape=worker", timeout=30) as stream:
                connected.set()
                event = None
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "metrics":
                        events.append(json.loads(line.split(":", 1)[1]))
                        # Until the parent hears of the new region's next run (the child's
                        # schedule comes every second), its GET, and so the event's `worker`,
                        # say the worker is not monitored yet: wait for one that says it is.
                        if len(events) >= 2 and events[-1]["monitoring"]["active"]:
                            got.set()
                            return

        threading.Thread(target=listen, daemon=True).start()
        assert connected.wait(10)
        body = {"name": "sse", "aws_region": REGION, "aws_instance_id": instance}
        worker = httpx.post(f"{base}/api/workers", json=body).json()
        assert got.wait(30), events
        assert {e["id"] for e in events} == {worker["id"]}
        assert events[-1]["cpu_utilization"] == 64.0
        # Gauges from the events, counters from the child's snapshot, on the parent's /metrics.
        metrics = f"{base}/metrics"
        wait_until(lambda: "cml_monitor_collection_seconds_count 0.0" not in httpx.get(metrics).text)
        text = httpx.get(metrics).text
        labels = f'worker_id="{worker["id"]}",worker_name="sse"'
        gauge = f"cml_monitor_worker_cpu_utilization_percent{{{labels}}} 64.0"
        assert gauge in text
        assert 'cml_monitor_aws_requests_total{operation="DescribeInstanceStatus",service="ec2"}' in text
        jobs = httpx.get(f"{base}/api/monitoring/jobs").json()["items"]
        assert [job["worker_id"] for job in jobs] == [worker["id"]] and jobs[0]["next_run_at"]
        shown = httpx.get(f"{base}/api/workers/{worker['id']}").json()
        assert shown["monitoring"]["active"] and shown["monitoring"]["next_run_at"]
        # The event is the worker as GET answers it: the same keys, the same values but for what
        # a later collection moves, and the next run as this parent reads it.
        told = events[-1]
        assert told.keys() == shown.keys() and told["monitoring"].keys() == shown["monitoring"].keys()
        moving = {"updated_at", "last_collected_at", "last_activity_at", "idle", "monitoring"}
        assert {k: v for k, v in told.items() if k not in moving} == {
            k: v for k, v in shown.items() if k not in moving
        }
        assert told["monitoring"]["active"] and told["monitoring"]["next_run_at"]
        assert told["last_collected_at"] and told["cpu_utilization"] == 64.0
    finally:
        output = stop(process, signal.SIGTERM)
    assert process.returncode == 0, output
