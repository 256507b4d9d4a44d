"""`kill -9` with a notification still in the outbox: it goes out after the restart."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx

from cml_fleet_sim.serving import ThreadedServer, free_port
from cml_fleet_sim.simulator import FleetSimulator

from .helpers import Receiver
from .processes import spawn_cli, wait_until


def _serve(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return spawn_cli(["serve"], env, cwd, quiet=True)


def test_a_pending_notification_survives_kill_9(tmp_path: Path) -> None:
    sim = FleetSimulator(instant_transitions=True, seed=9)
    sim.start()
    receiver_port = free_port()  # nothing listens there yet: the receiver is "down"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}",
        "AWS_ENDPOINT_URL": sim.url,
        "CML_MONITOR_PORT": str(port),
        "WORKER_MONITORING_ENABLED": "false",
        "WORKER_NOTIFICATION_WEBHOOKS": f"http://127.0.0.1:{receiver_port}/hook",
        "WORKER_NOTIFICATION_RETRY_BASE": "0.2",
        "WORKER_NOTIFICATION_RETRY_MAX": "1",
    }
    base = f"http://127.0.0.1:{port}"
    (instance,) = sim.add_workers(1, with_controllers=False)
    sim.fleet.set_status_checks(instance.instance_id, system="impaired")
    first = _serve(env, tmp_path)
    server = None
    second = None
    try:
        wait_until(lambda: httpx.get(f"{base}/health").status_code == 200)
        body = {"name": "victim", "aws_region": "us-east-1", "aws_instance_id": instance.instance_id}
        worker = httpx.post(f"{base}/api/workers", json=body).json()
        assert httpx.post(f"{base}/api/workers/{worker['id']}/refresh").status_code == 202
        wait_until(
            lambda: any(
                n["attempts"] >= 1
                for n in httpx.get(f"{base}/api/notifications?state=pending").json()["items"]
            )
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        receiver = Receiver()
        server = ThreadedServer(receiver.app, port=receiver_port).start()
        second = _serve(env, tmp_path)
        wait_until(lambda: len(receiver.requests) >= 1, timeout=30)
        wait_until(lambda: httpx.get(f"{base}/api/notifications?state=sent").json()["items"])
        (request,) = receiver.requests
        assert request["json"]["type"] == "alert.firing"
        assert request["json"]["alert"]["kind"] == "status_check"
        assert request["json"]["worker"]["id"] == worker["id"]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        if server is not None:
            server.stop()
        sim.stop()
    assert second is not None and second.returncode == 0
