"""`cml-monitor demo`: the simulator and the full service on one machine, no AWS account needed.

It starts the fleet simulator (AWS + CML controllers on loopback), registers the fleet in a
fresh SQLite database under `./data/demo/`, serves the monitor (poll every 15 s) and plays a
scenario. Ctrl-C stops everything and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

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


async def _register_fleet(database_url: str, workers: list[Worker]) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        repository = CMLWorkerRepository(engine)
        for worker in workers:
            await repository.add_async(worker)
    finally:
        await engine.dispose()


def run_demo(workers: int = 25, port: int = 8080, speed: float = 1.0, host: str = "127.0.0.1") -> int:
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
        worker_metrics_poll_interval=POLL_INTERVAL,
        cml_username=USERNAME,
        cml_password=PASSWORD,
        # The simulated controllers listen on 127.0.0.1, which the default refuses.
        cml_url_blocked_networks="::1/128,169.254.0.0/16,fd00:ec2::/32,0.0.0.0/8",
        cml_monitor_host=host,
        cml_monitor_port=port,
        # Idle workers show within minutes; auto-pause is on but dry-run: recorded, never done.
        worker_idle_timeout=120,
        worker_idle_check_interval=30,
        worker_auto_pause_enabled=True,
        worker_auto_pause_dry_run=True,
        worker_auto_pause_grace=60,
    )
    app = create_app(settings, runtime=serve_runtime(settings))
    scenario = DemoScenario(simulator, [i.instance_id for i in instances], speed=speed)
    scenario.start()
    base = f"http://{host}:{port}"
    has_dashboard = any(getattr(route, "path", None) == "/" for route in app.routes)
    print(
        f"\n  CML Worker Monitor demo: {len(fleet)} simulated workers, polled every {POLL_INTERVAL} s\n"
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
        scenario.stop()
        simulator.stop()
        logger.info("Demo stopped")
