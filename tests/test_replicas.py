"""Two replicas of `cml-monitor serve` on one PostgreSQL and one Redis: one collection per
region per interval between them, and the survivor carries on when one is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from cml_fleet_sim.serving import free_port
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.storage import create_engine, drop_all

from .conftest import POSTGRES_URL
from .processes import spawn_cli, stop, wait_until

INTERVAL = 2


def describe_calls(sim: FleetSimulator) -> int:
    return sim.fleet.requests[("ec2", "DescribeInstanceStatus")]


async def _clean_database() -> None:
    engine = create_engine(POSTGRES_URL)
    await drop_all(engine)
    await engine.dispose()


def test_replicas_share_the_work_and_survive_each_other(tmp_path: Path, redis_url: str) -> None:
    asyncio.run(_clean_database())
    sim = FleetSimulator(instant_transitions=True, seed=8)
    sim.start()
    (instance,) = sim.add_workers(1, with_controllers=False)
    ports = [free_port(), free_port()]
    env = {
        **os.environ,
        "DATABASE_URL": POSTGRES_URL,
        "BACKGROUND_JOB_STORE_URL": redis_url,
        "AWS_ENDPOINT_URL": sim.url,
        "WORKER_METRICS_POLL_INTERVAL": str(INTERVAL),
    }
    replicas = [spawn_cli(["serve", "--port", str(port)], env, tmp_path) for port in ports]
    try:
        for port in ports:
            wait_until(lambda port=port: httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200)
        body = {"name": "shared", "aws_region": "us-east-1", "aws_instance_id": instance.instance_id}
        worker = httpx.post(f"http://127.0.0.1:{ports[0]}/api/workers", json=body).json()
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{ports[1]}/api/workers/{worker['id']}").json()[
                "last_collected_at"
            ]
        )

        before, started = describe_calls(sim), time.monotonic()
        time.sleep(5 * INTERVAL)  # a measuring window, not a synchronisation
        intervals = (time.monotonic() - started) / INTERVAL
        calls = describe_calls(sim) - before
        assert calls <= intervals + 1, f"{calls} DescribeInstanceStatus calls in {intervals:.1f} intervals"
        assert calls >= intervals - 2

        output = stop(replicas[0], signal.SIGKILL)
        del output
        seen = httpx.get(f"http://127.0.0.1:{ports[1]}/api/workers/{worker['id']}").json()[
            "last_collected_at"
        ]
        wait_until(
            lambda: (
                httpx.get(f"http://127.0.0.1:{ports[1]}/api/workers/{worker['id']}").json()[
                    "last_collected_at"
                ]
                != seen
            ),
            timeout=6 * INTERVAL,
        )
    finally:
        for replica in replicas:
            if replica.poll() is None:
                stop(replica, signal.SIGTERM)
        sim.stop()
    assert replicas[1].returncode == 0
