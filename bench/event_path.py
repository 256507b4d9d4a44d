"""What one cycle's `metrics` events cost on their way to the live stream, step by step.

    python -m bench.event_path [--workers 10000] [--controllers 1000] [--runs 9]

No simulator and no I/O: `--workers` workers as a collection leaves them (`--controllers` of
them with a CML controller of two computes, the others without), and each step of an event's
path in `serve`, timed over the whole cycle: the collector makes the events, the bus encodes
them (`to_bus_json` + `json.dumps`, as `local_bus` and `event_bus` do), the replica across
decodes them (`json.loads` + `from_json`), and the hub, while a client is subscribed, encodes
each `metrics` frame (the event's JSON and its `worker`). Each figure is the best of `--runs`
with the garbage collector paused, so that two versions compare on a shared machine (run one
version's code with `PYTHONPATH=<its src>:<its root>`). Also: the bytes of one event on the bus,
and of one frame with and without a controller.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cml_monitor.domain import Worker, WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.cml import CmlStatus, ComputeHealth
from cml_monitor.domain.idle import IdleState
from cml_monitor.live_events import EventHub, frame
from cml_monitor.monitoring.collector import metrics_event


def fleet(workers: int, controllers: int) -> list[Worker]:
    now = datetime.now(UTC)
    fleet = []
    for n in range(workers):
        worker = Worker.register(
            name=f"bench-{n:05d}",
            aws_region="us-east-1",
            aws_instance_id=f"i-{n:017x}",
            now=now - timedelta(days=30),
            cml_url=f"https://10.0.{n // 250}.{n % 250}" if n < controllers else None,
        )
        worker.update_ec2_state(instance_state="running", system_status="ok", instance_status="ok", now=now)
        worker.update_telemetry(
            cpu_utilization=12.5 + n % 50,
            memory_utilization=40.25,
            active_labs_count=None,
            now=now,
            metrics_source="controller" if n < controllers else "cloudwatch",
        )
        worker.idle = IdleState(last_user_activity_at=now, running_seconds=3600.0 * (n % 7))
        if n < controllers:
            worker.cml = CmlStatus(
                reachable=True,
                version="2.9.0",
                ready=True,
                healthy=True,
                licensed=True,
                license_registration="COMPLETED",
                license_authorization="IN_COMPLIANCE",
                license_expires_at=now + timedelta(days=200),
                labs_started=2,
                labs_total=5,
                running_nodes=12,
                total_nodes=20,
                cpu_percent=33.0,
                memory_used_percent=44.0,
                disk_used_percent=55.0,
                allocated_cpus=16,
                cpu_count=32,
                computes=(
                    ComputeHealth("controller", True, "READY"),
                    ComputeHealth("compute-1", True, "READY"),
                ),
                collected_at=now,
                license_checked_at=now,
                last_user_activity_at=now,
                activity_checked_at=now,
            )
        fleet.append(worker)
    return fleet


def best(function: Callable[[], Any], runs: int) -> float:
    """Milliseconds, the best of `runs`, the garbage collector paused."""
    times = []
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        finally:
            gc.enable()
    return round(min(times) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--controllers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    workers = fleet(args.workers, min(args.controllers, args.workers))
    events = [metrics_event(w, WorkerStatus.RUNNING) for w in workers]
    # A version without `to_bus_json` sent `to_json()` over its buses.
    on_bus = getattr(WorkerMetricsCollected, "to_bus_json", WorkerMetricsCollected.to_json)
    payload = json.dumps([on_bus(e) for e in events])
    hub = EventHub()
    as_sent = getattr(hub, "worker_of", WorkerMetricsCollected.to_json)  # the dashboard's stream

    figures = {
        "workers": args.workers,
        "controllers": args.controllers,
        "collector_ms": best(lambda: [metrics_event(w, WorkerStatus.RUNNING) for w in workers], args.runs),
        "bus_encode_ms": best(lambda: json.dumps([on_bus(e) for e in events]), args.runs),
        "bus_decode_ms": best(
            lambda: [WorkerMetricsCollected.from_json(item) for item in json.loads(payload)], args.runs
        ),
        "hub_frames_ms": best(lambda: b"".join(frame("metrics", as_sent(e)) for e in events), args.runs),
        "bus_bytes_per_event": round(len(payload) / len(events)),
        "frame_bytes_controller": len(frame("metrics", as_sent(events[0]))),
        "frame_bytes_no_controller": len(frame("metrics", as_sent(events[-1]))),
    }
    print(f"{args.workers} workers ({args.controllers} with a controller), best of {args.runs}, GC paused:")
    for name, value in figures.items():
        print(f"  {name:28s} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
