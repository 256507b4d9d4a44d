"""How long from a stop behind our back to the monitor knowing it, with and without EC2 events.

    python -m bench.latency [--stops 20] [--interval 300] [--no-baseline]

The simulator (EC2 with realistic stop timing, and EventBridge → SQS) and the real service
(lifespan, scheduler, alert engine, dispatcher, events consumer) run in this process; a webhook
receiver on loopback records when each `worker.status_changed` arrives. With events: the
workers are stopped one by one (one every 0.5 s); for each, the seconds until (a) the API shows
`stopping`/`stopped`, (b) the receiver gets `worker.status_changed`. Without events (the
baseline): the same stops spread at random over one poll interval, detected by polling only.
Also: SQS calls a minute while idle. Last line JSON: {"events": true, "p50_seconds",
"max_seconds", "sqs_calls_per_minute", "baseline_p50_seconds", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cml_fleet_sim.serving import ThreadedServer
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.api.app import create_app
from cml_monitor.settings import load_settings

REGION = "us-east-1"


class Receiver:
    """A webhook receiver that notes when each worker's status change arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        body = json.loads(await request.body())
        if body.get("type") == "worker.status_changed" and body.get("status") in ("stopping", "stopped"):
            self.arrived.setdefault(body["worker"]["id"], time.monotonic())
        return Response(status_code=204)


async def run(args: argparse.Namespace, events: bool, directory: Path) -> dict[str, Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    sim = FleetSimulator(seed=5)
    sim.start()
    receiver = Receiver()
    hook = ThreadedServer(receiver.app).start()
    queue = sim.enable_events() if events else None
    database = directory / f"latency-{'events' if events else 'poll'}.db"
    settings = load_settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{database}",
        aws_endpoint_url=sim.url,
        worker_metrics_poll_interval=args.interval,
        worker_notification_webhooks=f"{hook.url}/hook",
        worker_notification_retry_base=0.2,
        worker_events_queue_url=queue.url if queue else "",
    )
    stack = AsyncExitStack()
    try:
        app = create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://monitor")
        )
        instances = sim.add_workers(args.stops, with_controllers=False)
        ids = {}
        for instance in instances:
            body = {
                "name": instance.instance_id[-6:],
                "aws_region": REGION,
                "aws_instance_id": instance.instance_id,
            }
            ids[instance.instance_id] = (await client.post("/api/workers", json=body)).json()["id"]
        await app.state.runtime.monitor.drain()
        sqs_before = _sqs_calls(sim)
        idle_started = time.monotonic()
        await asyncio.sleep(args.idle_seconds)  # the queue's cost while nothing happens
        sqs_per_minute = (_sqs_calls(sim) - sqs_before) * 60 / (time.monotonic() - idle_started)

        stopped_at: dict[str, float] = {}
        seen_at: dict[str, float] = {}

        async def stop_later(instance_id: str, delay: float) -> None:
            await asyncio.sleep(delay)
            sim.fleet.stop(instance_id, requested=False)
            stopped_at[ids[instance_id]] = time.monotonic()

        rng = random.Random(7)
        spacing = (
            [0.5 * n for n in range(len(ids))]
            if events
            else sorted(rng.uniform(0, args.interval) for _ in ids)
        )
        stoppers = [asyncio.create_task(stop_later(i, d)) for i, d in zip(ids, spacing, strict=True)]
        deadline = time.monotonic() + spacing[-1] + 2 * args.interval + 30
        while len(seen_at) < len(ids) or len(receiver.arrived) < len(ids):
            if time.monotonic() > deadline:
                break
            for worker_id in ids.values():
                if worker_id in stopped_at and worker_id not in seen_at:
                    status = (await client.get(f"/api/workers/{worker_id}")).json()["status"]
                    if status in ("stopping", "stopped"):
                        seen_at[worker_id] = time.monotonic()
            await asyncio.sleep(0.1)
        await asyncio.gather(*stoppers)
    finally:
        await stack.aclose()
        hook.stop()
        sim.stop()
    api = [seen_at[w] - stopped_at[w] for w in seen_at]
    webhook = [receiver.arrived[w] - stopped_at[w] for w in receiver.arrived if w in stopped_at]
    return {
        "stops": len(stopped_at),
        "api_p50": round(statistics.median(api), 2) if api else None,
        "api_max": round(max(api), 2) if api else None,
        "webhook_p50": round(statistics.median(webhook), 2) if webhook else None,
        "webhook_max": round(max(webhook), 2) if webhook else None,
        "missed": len(stopped_at) - len(api),
        "sqs_calls_per_minute": round(sqs_per_minute, 1),
    }


def _sqs_calls(sim: FleetSimulator) -> int:
    return sum(n for (service, _), n in sim.fleet.requests.items() if service == "sqs")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stops", type=int, default=20, help="workers stopped behind our back (default 20)")
    parser.add_argument("--interval", type=int, default=300, help="poll interval, seconds (default 300)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="seconds to count idle SQS calls")
    parser.add_argument("--no-baseline", action="store_true", help="skip the polling-only run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        with_events = asyncio.run(run(args, True, Path(directory)))
        print(f"with events:    {with_events}")
        baseline = None
        if not args.no_baseline:
            baseline = asyncio.run(run(args, False, Path(directory)))
            print(f"polling only:   {baseline}")
    worst = max(v for v in (with_events["api_max"], with_events["webhook_max"]) if v is not None)
    print(
        json.dumps(
            {
                "events": True,
                "p50_seconds": with_events["api_p50"],
                "max_seconds": worst,
                "webhook_p50_seconds": with_events["webhook_p50"],
                "sqs_calls_per_minute": with_events["sqs_calls_per_minute"],
                "baseline_p50_seconds": baseline["api_p50"] if baseline else None,
                "baseline_max_seconds": baseline["api_max"] if baseline else None,
                "stops": with_events["stops"],
                "interval": args.interval,
            }
        )
    )


if __name__ == "__main__":
    main()
