"""`cml-monitor demo`: the simulator and the full service on one machine, no AWS account needed.

It starts the fleet simulator (AWS + CML controllers on loopback), registers the fleet in a
fresh SQLite database under `./data/demo/`, serves the monitor (poll every 15 s) and plays a
scenario. Two workers show what saves money: the first has no lab and no user, goes idle within
a few minutes and is auto-paused (dry run: recorded on the actions page, never done); the
second starts stopped and is started by hand through the API, which snoozes its auto-pause.
Ctrl-C stops everything and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME
from cml_fleet_sim.scenario import DemoScenario
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.api.app import create_app
from cml_monitor.api.server import run_server
from cml_monitor.clock import utcnow
from cml_monitor.domain import Worker
from cml_monitor.settings import load_settings
from cml_monitor.storage import CMLWorkerRepository, create_engine, migrate
from cml_monitor.supervisor import serve_runtime
from cml_monitor.telemetry import configure_logging

logger = logging.getLogger(__name__)
DEMO_REGIONS = ("us-east-1", "eu-west-1")
POLL_INTERVAL = 15


@dataclass(frozen=True, slots=True)
class DemoTiming:
    """How fast the story goes: idle after `idle_timeout` s, paused `grace` s later."""

    poll_interval: int = POLL_INTERVAL
    idle_timeout: int = 120
    idle_check_interval: int = 30
    grace: int = 60
    start_by_hand_after: float = 20.0  # seconds after the worker was first seen stopped


def _start_by_hand(base: str, worker: Worker, after: float, stopped: threading.Event) -> None:
    """What an operator does: start a stopped worker from the monitor, which snoozes auto-pause."""
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stopped.wait(1.0):
            try:
                seen = client.get(f"/api/workers/{worker.id}").json()
            except (httpx.HTTPError, ValueError):
                continue  # the server is starting
            if seen.get("status") == "stopped":
                break
        if stopped.wait(after):
            return
        try:
            done = client.post(f"/api/workers/{worker.id}/start")
        except httpx.HTTPError as exc:
            logger.warning("Demo: could not start %s by hand: %s", worker.name, exc)
            return
        logger.info(
            "🎬 Scenario: %s started by hand (HTTP %d): auto-pause snoozed", worker.name, done.status_code
        )


async def _register_fleet(database_url: str, workers: list[Worker]) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        repository = CMLWorkerRepository(engine)
        for worker in workers:
            await repository.add_async(worker)
    finally:
        await engine.dispose()


def run_demo(
    workers: int = 25,
    port: int = 8080,
    speed: float = 1.0,
    host: str = "127.0.0.1",
    timing: DemoTiming = DemoTiming(),
) -> int:
    configure_logging("INFO")
    data_dir = Path("data/demo")
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    # The simulator accepts any credentials; botocore still wants some to sign with.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")

    simulator = FleetSimulator(speed=speed)
    sim_url = simulator.start(host)
    instances = []
    for index, region in enumerate(DEMO_REGIONS):
        share = workers - len(instances) if index == len(DEMO_REGIONS) - 1 else (workers * 2 + 2) // 3
        instances += simulator.add_workers(max(0, share), region=region, tags={"Role": "cml"})
    # The first worker: no lab, no user, little CPU, so it goes idle and is auto-paused (dry run).
    idle = instances[0].instance_id
    simulator.set_labs(idle, 0, 1)
    simulator.fleet.set_metrics(idle, cpu=2.0, memory=30.0)
    # The second starts stopped (not stopping for 45 s first); the story starts it by hand,
    # through the monitor.
    by_hand = instances[1].instance_id if len(instances) > 1 else None
    if by_hand is not None:
        simulator.fleet.stop(by_hand, requested=True, instant=True)
    fleet = [
        Worker.register(
            name=f"cml-{instance.region.split('-')[0]}{instance.region.split('-')[-1]}-{number:02d}",
            aws_region=instance.region,
            aws_instance_id=instance.instance_id,
            cml_url=simulator.controller_url(instance.instance_id),
            now=utcnow(),
        )
        for number, instance in enumerate(instances, start=1)
    ]
    database_url = f"sqlite+aiosqlite:///{data_dir / 'cml-monitor.db'}"
    asyncio.run(_register_fleet(database_url, fleet))

    settings = load_settings(
        _env_file=None,
        database_url=database_url,
        background_job_store_url="",
        aws_endpoint_url=sim_url,
        worker_metrics_poll_interval=timing.poll_interval,
        cml_username=USERNAME,
        cml_password=PASSWORD,
        # The simulated controllers listen on 127.0.0.1, which the default refuses.
        cml_url_blocked_networks="::1/128,169.254.0.0/16,fd00:ec2::/32,0.0.0.0/8,::/128,100.100.100.200/32",
        cml_monitor_host=host,
        cml_monitor_port=port,
        # Idle workers show within minutes; auto-pause is on but dry-run: recorded, never done.
        worker_idle_timeout=timing.idle_timeout,
        worker_idle_check_interval=timing.idle_check_interval,
        worker_auto_pause_enabled=True,
        worker_auto_pause_dry_run=True,
        worker_auto_pause_grace=timing.grace,
    )
    app = create_app(settings, runtime=serve_runtime(settings))
    # The scenario's faults and labs leave the idle and the by-hand workers alone.
    scenario = DemoScenario(simulator, [i.instance_id for i in instances[2:]], speed=speed)
    scenario.start()
    base = f"http://{host}:{port}"
    story_over = threading.Event()
    if by_hand is not None:
        threading.Thread(
            target=_start_by_hand,
            args=(base, fleet[1], timing.start_by_hand_after / speed, story_over),
            name="demo-start-by-hand",
            daemon=True,
        ).start()
    has_dashboard = any(getattr(route, "path", None) == "/" for route in app.routes)
    minutes = (timing.idle_timeout + timing.grace + 2 * timing.idle_check_interval) // 60 + 1
    print(
        f"\n  CML Worker Monitor demo: {len(fleet)} simulated workers,"
        + f" polled every {timing.poll_interval} s\n"
        + f"  {fleet[0].name} goes idle and is auto-paused (dry run) within {minutes} minutes: see Actions\n"
        + (f"  Dashboard:        {base}/\n" if has_dashboard else "")
        + f"  API docs:         {base}/docs\n"
        + f"  Workers (JSON):   {base}/api/workers\n"
        + f"  Live events:      {base}/api/events\n"
        + f"  Prometheus:       {base}/metrics\n"
        + f"  Simulator admin:  {sim_url}/sim/instances\n"
        + "  Ctrl-C to stop.\n",
        flush=True,
    )
    try:
        return run_server(app, host, port)
    finally:
        story_over.set()
        scenario.stop()
        simulator.stop()
        logger.info("Demo stopped")
