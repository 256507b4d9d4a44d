"""Soak: does the service hold steady over time, or does something grow?

    python -m bench.soak [--minutes 30] [--warmup 5] [--workers 300] [--interval 10]
                         [--sse-clients 50] [--sample-seconds 60]

The simulator (its own process) serves `--workers` workers with CML controllers; the real
service (`cml-monitor serve`) collects them every `--interval` seconds into PostgreSQL
(`BENCH_POSTGRES_URL`, emptied first) with its job store in Redis (`BENCH_REDIS_URL`, flushed
first), while `--sse-clients` live streams (another process) read every event. Every
`--sample-seconds` the service's resident memory, open descriptors, connections to the database
(`pg_stat_activity`) and asyncio tasks (`cml_monitor_asyncio_tasks` on `/metrics`) are sampled;
each sample is the median of five readings spread over one interval, so a sample does not land
by chance inside or outside a collection.

The last line printed is one JSON object: each figure's least-squares slope per hour over the
samples after the `--warmup` minutes, the first and last values, and whether RSS grows by at
most 5 MB an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from bench.cycle import prepare_database, start_simulator
from bench.load import start_listeners, start_service, wait_ready
from bench.process_stats import open_fds, rss_mb, slope_per_hour
from cml_fleet_sim.serving import free_port

RSS_GOAL_MB_PER_HOUR = 5.0
FIGURES = ("rss_mb", "open_fds", "db_connections", "asyncio_tasks")


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


async def reading(pid: int, base: str, db: asyncpg.Connection, http: httpx.AsyncClient) -> dict[str, float]:
    connections = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    text = (await http.get(f"{base}/metrics")).text
    return {
        "rss_mb": rss_mb(pid),
        "open_fds": float(open_fds(pid)),
        "db_connections": float(connections),
        "asyncio_tasks": metric(text, "cml_monitor_asyncio_tasks") or 0.0,
        "collections": metric(text, "cml_monitor_collection_seconds_count") or 0.0,
    }


async def sample(
    pid: int, base: str, db: asyncpg.Connection, http: httpx.AsyncClient, interval: float
) -> dict[str, float]:
    """The median of five readings spread over one collection interval."""
    readings = []
    for _ in range(5):
        readings.append(await reading(pid, base, db, http))
        await asyncio.sleep(interval / 5)
    return {name: statistics.median(r[name] for r in readings) for name in readings[0]}


async def soak(pid: int, base: str, database_url: str, args: argparse.Namespace) -> list[dict[str, float]]:
    db = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    samples = []
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            begin = time.monotonic()
            for n in range(int(args.minutes * 60 / args.sample_seconds) + 1):
                await asyncio.sleep(max(0.0, begin + n * args.sample_seconds - time.monotonic()))
                taken = await sample(pid, base, db, http, args.interval)
                taken["minute"] = round((time.monotonic() - begin) / 60, 2)
                samples.append(taken)
                print(
                    f"  {taken['minute']:6.2f} min  RSS {taken['rss_mb']:7.1f} MB  "
                    f"fds {taken['open_fds']:5.0f}  db {taken['db_connections']:3.0f}  "
                    f"tasks {taken['asyncio_tasks']:5.0f}  "
                    f"collections {taken['collections']:.0f}",
                    flush=True,
                )
    finally:
        await db.close()
    return samples


def summarise(samples: list[dict[str, float]], args: argparse.Namespace) -> dict[str, Any]:
    settled = [s for s in samples if s["minute"] >= args.warmup]
    figures: dict[str, Any] = {
        "minutes": args.minutes,
        "warmup_minutes": args.warmup,
        "workers": args.workers,
        "interval_s": args.interval,
        "sse_clients": args.sse_clients,
        "samples_after_warmup": len(settled),
        "collections": samples[-1]["collections"] - samples[0]["collections"] if samples else 0,
    }
    for name in FIGURES:
        slope = slope_per_hour([(s["minute"] * 60, s[name]) for s in settled])
        figures[f"{name}_per_hour"] = None if slope is None else round(slope, 2)
        figures[f"{name}_first"] = settled[0][name] if settled else None
        figures[f"{name}_last"] = settled[-1][name] if settled else None
    slope = figures["rss_mb_per_hour"]
    figures["rss_goal_met"] = slope is not None and slope <= RSS_GOAL_MB_PER_HOUR
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes left out of the slopes")
    parser.add_argument("--workers", type=int, default=300)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--sse-clients", type=int, default=50)
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    args = parser.parse_args()
    if args.warmup >= args.minutes:
        parser.error("--warmup must be shorter than --minutes")
    database_url = os.environ.get("BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/bench")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(redis_url).flushdb()
    args.regions, args.controllers = 1, args.workers
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        simulator, fleet = start_simulator(args, workdir)
        asyncio.run(prepare_database(database_url, fleet))
        port = free_port()
        extra = {
            "DATABASE_URL": database_url,
            "BACKGROUND_JOB_STORE_URL": redis_url,
            "LOG_FILE": str(workdir / "monitor.log"),
        }
        service = start_service(fleet, workdir, port, args.interval, extra)
        base = f"http://127.0.0.1:{port}"
        listeners = None
        try:
            wait_ready(base)
            counts_file = workdir / "sse-counts.json"
            listeners = start_listeners(base, args.sse_clients, args.minutes * 60 + 30, counts_file, 0)
            samples = asyncio.run(soak(service.pid, base, database_url, args))
            listeners.wait(120)
            counts = json.loads(counts_file.read_text()) if counts_file.exists() else [0]
        finally:
            if listeners is not None and listeners.poll() is None:
                listeners.kill()
            service.terminate()
            simulator.terminate()
            service.wait(30)
            simulator.wait(30)
    figures = summarise(samples, args)
    figures["sse_events_per_client_min"] = min(counts)
    figures["sse_events_per_client_max"] = max(counts)
    print(
        f"{args.workers} workers every {args.interval} s, {args.sse_clients} SSE clients, "
        f"{args.minutes:g} min (slopes after {args.warmup:g} min):"
    )
    for name in FIGURES:
        print(
            f"  {name}: {figures[f'{name}_first']} → {figures[f'{name}_last']}, "
            f"slope {figures[f'{name}_per_hour']} per hour"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
