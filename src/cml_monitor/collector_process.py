"""The collector child of `serve`: the whole monitoring side of the runtime, without HTTP.

Started by `CollectorSupervisor` as `python -m cml_monitor.collector_process <socket>`, with the
parent's settings as JSON on stdin (so settings given in code, as the demo does, and secrets
never go through the environment or the command line). It runs the `collector` role: the
scheduler, the AWS and CML reads, the alert engine, the dispatcher and the actions. Its events
go to the parent over the local channel (or over Redis when `EVENT_BUS_URL` is set), its log
lines go to the same stdout tagged `[collector]`, and it answers the parent's calls.

It stops on SIGTERM or SIGINT (the collection in flight ends or is cancelled, as in `serve`), and
on its own when the parent process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from prometheus_client import generate_latest

from cml_monitor.event_bus import EventBus
from cml_monitor.heap import freeze_startup_heap
from cml_monitor.local_bus import ChannelClient
from cml_monitor.monitoring import ObserverPublisher
from cml_monitor.runtime import MonitorRuntime, build_runtime
from cml_monitor.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("cml_monitor.collector")

SNAPSHOT_PERIOD = 1.0  # how often the collector's own counters reach the parent's /metrics


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


class CollectorService:
    """The parent's calls, answered from the collector's runtime."""

    def __init__(self, runtime: MonitorRuntime, *, local_bus: bool) -> None:
        self.runtime = runtime
        self.local_bus = local_bus

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        scheduler = self.runtime.scheduler
        if method == "readiness":  # as [name, state, detail] triples
            checks = await self.runtime.readiness()
            return [
                [check.name, check.state.value, check.detail]
                for check in checks
                # The event bus, when it is the channel: it is answering this very call.
                if not (self.local_bus and check.name == "event_bus")
            ]
        if method == "view":
            return {**self.schedule(), "monitored": self.runtime.monitored.items()}
        if method == "wake_dispatcher":  # the API wrote notifications (a manual action's)
            self.runtime.dispatcher.wake()
            return None
        worker_id = str(params["worker_id"])
        if method == "start_monitoring":
            await scheduler.start_monitoring_worker_async(worker_id)
        elif method == "stop_monitoring":
            await scheduler.stop_monitoring_worker_async(worker_id)
        elif method == "collect_soon":
            self.runtime.monitor.collect_soon(worker_id)
        else:
            raise ValueError(f"unknown call {method!r}")
        return None

    def schedule(self) -> dict[str, Any]:
        """Whether the scheduler runs, each region's next run, the workers paused by hand."""
        scheduler = self.runtime.scheduler
        return {
            "started": scheduler.running,
            "runs": {region: _iso(at) for region, at in scheduler.region_runs().items()},
            "paused": sorted(self.runtime.monitored.paused()),
        }


async def _send_snapshots(client: ChannelClient, service: CollectorService) -> None:
    """The collector's counters and histograms (merged into the parent's `/metrics`) and its
    schedule (the next runs the API shows), once a second."""
    while True:
        text = await asyncio.to_thread(generate_latest, service.runtime.metrics.registry)
        await client.send({"t": "metrics", "text": text.decode(), "schedule": service.schedule()})
        await asyncio.sleep(SNAPSHOT_PERIOD)


async def run_collector(settings: Settings, path: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = ChannelClient(path, on_parent_gone=stop.set)
    local_bus = not settings.event_bus_url

    def channel_bus(_sinks: ObserverPublisher) -> EventBus:
        return client

    # With EVENT_BUS_URL, events go through Redis as for any collector; the channel still
    # carries the calls and the snapshots.
    runtime = build_runtime(settings, event_bus=channel_bus if local_bus else None)
    service = CollectorService(runtime, local_bus=local_bus)
    client.handler = service
    if not local_bus:
        await client.start()
    try:
        async with runtime:
            freeze_startup_heap()
            snapshots = loop.create_task(_send_snapshots(client, service))
            logger.info("Collector process ready")
            await stop.wait()
            logger.info("Collector process stopping")
            snapshots.cancel()
            await asyncio.gather(snapshots, return_exceptions=True)
    finally:
        if not local_bus:
            await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    from cml_monitor.telemetry import configure_logging, configure_tracing

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m cml_monitor.collector_process <socket path> < settings.json", file=sys.stderr)
        return 2
    try:
        settings = load_settings(_env_file=None, **json.loads(sys.stdin.read()))
    except (SettingsError, ValueError) as exc:
        print(f"cml-monitor collector: {exc}", file=sys.stderr)
        return 2
    settings = settings.model_copy(update={"cml_monitor_role": "collector"})
    configure_logging(settings.log_level, settings.log_file, settings.log_format, process="collector")
    configure_tracing()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_collector(settings, args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
