"""API latency while the monitor collects and many live clients listen.

    python -m bench.load [--workers 500] [--sse-clients 200] [--rate 50] [--seconds 45] [--interval 10]
                         [--controllers N] [--nice 19] [--split | --single-process] [--cpu-split]

The simulator runs in its own process (500 workers with CML controllers answering in 50 ms);
the real service (`cml-monitor serve`, SQLite, jobs in the database) runs in another, polling
every `--interval` seconds so several cycles fall inside the measurement. This process opens
`--sse-clients` event streams (each reads every event, in a process of their own so their
parsing does not slow the measuring loop) and sends `GET /api/workers?limit=100` at `--rate`
requests a second, open loop (a slow answer does not slow the next request), for
`--seconds`, and reports the latency of those requests, in particular in the seconds right
after each cycle starts, when the events fan out.

`--cpu-split` also samples the service with py-spy while it measures and reports where each
process's CPU went (CML reads, AWS, the database, the alert engine, the SSE fan-out, ...; see
`bench.cpu_split`).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.cpu_split import report, split
from bench.cycle import prepare_database, start_simulator
from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME
from cml_fleet_sim.serving import free_port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * (len(ordered) - 1)))], 1)


def start_service(
    fleet: dict[str, Any], workdir: Path, port: int, interval: int, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'monitor.db'}",
        "AWS_ENDPOINT_URL": fleet["url"],
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "WORKER_METRICS_POLL_INTERVAL": str(interval),
        "CML_USERNAME": USERNAME,
        "CML_PASSWORD": PASSWORD,
        "LOG_LEVEL": "WARNING",
        "CML_URL_BLOCKED_NETWORKS": "169.254.0.0/16,fd00:ec2::/32",  # the simulator is on loopback
        **(extra or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cml_monitor.cli", "serve", "--port", str(port)],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(base: str, timeout: float = 60.0) -> None:
    """Until the service's `/ready` answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the service did not become ready")
        time.sleep(0.2)


async def listen(base: str, clients: int, seconds: float, interval: float) -> list[int]:
    """`clients` event streams for `seconds`; how many `metrics` events each one read.

    A client told to `resync` after it fell behind (it lost events) counts as -1: it did not
    receive every event. The `resync` every stream opens with (reason "connected") is not a loss.
    """
    counts = [0] * clients

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        resync = False
        async with session.get(f"{base}/api/events") as response:
            async for line in response.content:
                if line.startswith(b"event: metrics") and counts[index] >= 0:
                    counts[index] += 1
                elif line.startswith(b"event: resync"):
                    resync = True
                    continue
                elif resync and line.startswith(b"data:") and b'"connected"' not in line:
                    counts[index] = -1
                resync = False

    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.ensure_future(one(session, i)) for i in range(clients)]
        await asyncio.sleep(seconds)
        # Stop between two cycles (cycles start on multiples of the interval, wall clock), not in
        # the middle of a fan-out, where clients stopped a moment apart would hold different counts.
        await asyncio.sleep((interval * 0.7 - time.time() % interval) % interval)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def start_listeners(
    base: str, clients: int, seconds: float, interval: float, out: Path, nice: int
) -> subprocess.Popen[bytes]:
    code = (
        "import asyncio, json, sys; from bench.load import listen; "
        f"counts = asyncio.run(listen({base!r}, {clients}, {seconds}, {interval})); "
        f"open({str(out)!r}, 'w').write(json.dumps(counts))"
    )
    command = [*(["nice", "-n", str(nice)] if nice else []), sys.executable, "-c", code]
    return subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1])


def start_sampler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on `pid` and its children, at 100 Hz, CPU only (idle threads are not sampled)."""
    command = [
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        *("--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100"),
        *("--format", "raw", "--output", str(out)),
        "--subprocesses",
        "--threads",
        "--full-filenames",
        "--nonblocking",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def measure(base: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    counts_file = workdir / "sse-counts.json"
    listeners = start_listeners(
        base, args.sse_clients, args.seconds + 4, args.interval, counts_file, args.nice
    )
    await asyncio.sleep(2)  # let every stream connect before measuring
    latencies: list[tuple[float, float]] = []  # (sent at, milliseconds)
    errors = 0
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(offset: int) -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                response = await client.get("/api/workers", params={"limit": 100, "offset": offset})
            except httpx.HTTPError:  # a reset connection is an error to count, not the end of the run
                errors += 1
                return
            latencies.append((started, (time.perf_counter() - started) * 1000))
            if response.status_code != 200:
                errors += 1

        pending = []
        begin = time.perf_counter()
        for n in range(int(args.rate * args.seconds)):
            due = begin + n / args.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            pending.append(asyncio.ensure_future(one((n * 100) % args.workers)))
        await asyncio.gather(*pending)
    try:
        await asyncio.to_thread(listeners.wait, 60)
    except subprocess.TimeoutExpired:
        listeners.kill()
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else [0]
    values = [ms for _, ms in latencies]
    # The seconds after each cycle starts (cycles fall on multiples of the interval, wall clock).
    after_cycle = [
        ms for at, ms in latencies if (time.time() - (time.perf_counter() - at)) % args.interval < 3.0
    ]
    return {
        "requests": len(values),
        "errors": errors,
        "p50_ms": percentile(values, 0.5),
        "p95_ms": percentile(values, 0.95),
        "max_ms": round(max(values), 1),
        "p95_ms_first_3s_of_cycles": percentile(after_cycle, 0.95) if after_cycle else None,
        "sse_events_per_client_min": min(counts),
        "sse_events_per_client_max": max(counts),
        # Every client connected before the measurement and read to its end: each one should
        # hold the same count, and none was told to resync.
        "sse_clients_missing_events": sum(1 for c in counts if c != max(counts)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--sse-clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--controllers", type=int, default=None, help="workers with a CML controller (all)")
    parser.add_argument(
        "--split",
        action="store_true",
        help="run the service as two replicas: CML_MONITOR_ROLE=api (measured) and =collector",
    )
    parser.add_argument(
        "--event-bus",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="EVENT_BUS_URL with --split (default BENCH_REDIS_URL)",
    )
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="one serve without its collector child (CML_MONITOR_COLLECTOR_PROCESS=false), as before",
    )
    parser.add_argument(
        "--cpu-split",
        action="store_true",
        help="sample the service with py-spy while measuring and report where its CPU went",
    )
    parser.add_argument(
        "--cpu-samples",
        type=Path,
        default=None,
        help="with --cpu-split, keep py-spy's raw samples in this folder (for a flame graph)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the simulator and the listeners at this nice level (19: they stand in for other "
        "machines, so they yield the CPU to the service)",
    )
    args = parser.parse_args()
    args.regions = 1
    args.controllers = args.workers if args.controllers is None else args.controllers
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        simulator, fleet = start_simulator(args, workdir, nice=args.nice)
        # Registered in the database before the service starts: registering through the API
        # would make the service collect each new worker at once, in the middle of the measurement.
        asyncio.run(prepare_database(f"sqlite+aiosqlite:///{workdir / 'monitor.db'}", fleet))
        port = free_port()
        services = []
        if args.split:  # an API replica and a collector replica, joined by the Redis event bus
            bus = {"EVENT_BUS_URL": args.event_bus}
            services.append(
                start_service(fleet, workdir, port, args.interval, {**bus, "CML_MONITOR_ROLE": "api"})
            )
            collector_port = free_port()
            services.append(
                start_service(
                    fleet, workdir, collector_port, args.interval, {**bus, "CML_MONITOR_ROLE": "collector"}
                )
            )
        else:
            single = {"CML_MONITOR_COLLECTOR_PROCESS": "false"} if args.single_process else {}
            services.append(start_service(fleet, workdir, port, args.interval, single))
        base = f"http://127.0.0.1:{port}"
        samplers: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        try:
            wait_ready(base)
            if args.cpu_split:
                roles = ["api", "collector"] if args.split else ["service"]
                for role, service in zip(roles, services, strict=True):
                    out = workdir / f"cpu-{role}.txt"
                    samplers.append((role, out, start_sampler(service.pid, args.seconds, out)))
            figures = asyncio.run(measure(base, args, workdir))
            shares: dict[str, dict[str, float]] = {}
            for role, out, sampler in samplers:
                sampler.wait(60)
                if args.cpu_samples is not None:
                    args.cpu_samples.mkdir(parents=True, exist_ok=True)
                    shutil.copy(out, args.cpu_samples / out.name)
                for label, parts in split(out.read_text()).items():
                    shares[label if role == "service" else role] = parts
            if shares:
                figures["cpu_split"] = shares
        finally:
            for service in services:
                service.terminate()
            simulator.terminate()
            for service in services:
                service.wait(30)
            simulator.wait(30)
    cycles = args.seconds / args.interval
    print(
        f"{args.workers} workers every {args.interval} s (~{cycles:.0f} cycles), "
        f"{args.sse_clients} SSE clients, {args.rate:g} req/s for {args.seconds:g} s"
    )
    print(
        f"  GET /api/workers?limit=100: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
        f"max {figures['max_ms']} ms; p95 in the 3 s after each cycle starts "
        f"{figures['p95_ms_first_3s_of_cycles']} ms; {figures['errors']} errors"
    )
    print(
        "  events per SSE client:",
        f"{figures['sse_events_per_client_min']}–{figures['sse_events_per_client_max']};",
        f"{figures['sse_clients_missing_events']} clients missed events",
    )
    if "cpu_split" in figures:
        print("  where the CPU went (share of py-spy samples):")
        print(report(figures["cpu_split"]))
    mode = "split" if args.split else "single-process" if args.single_process else "serve"
    print(
        json.dumps(
            {
                "mode": mode,
                "workers": args.workers,
                "sse_clients": args.sse_clients,
                "rate": args.rate,
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
