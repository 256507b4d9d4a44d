"""One monitoring cycle at fleet scale, against the simulator with AWS's rate limits on.

    python -m bench.cycle --workers 10000 [--regions 1] [--controllers 1000]
                          [--database sqlite|postgresql] [--job-store redis|database]
                          [--seed-budget 60] [--metrics-source auto|cloudwatch|controller]
                          [--profile cycle.prof]

The simulator runs in its own process (so its CPU is not counted as ours) with AWS's default
token buckets and CML controllers answering in 50 ms. The real monitor (scheduler, region job,
collector, repository, the notification handler and alert engine) runs a warm-up cycle (clients, ListMetrics
dimension discovery) and then the measured cycle, from the instant its jobs fall due to the
last worker's event. Then the seed's algorithm (per worker: DescribeInstanceStatus, two
GetMetricStatistics) runs against the same simulator for at most `--seed-budget` seconds;
when it cannot finish, its cycle time is extrapolated from the workers it did.

`--metrics-source` is `WORKER_METRICS_SOURCE`: with `auto` (the default) a worker whose
controller answered takes CPU and memory from it and is left out of GetMetricData; the figure
`cloudwatch_metrics_requested` is what CloudWatch bills for the measured cycle.

The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from sqlalchemy import insert

from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME
from cml_monitor.alerts.engine import AlertEngine
from cml_monitor.aws import AwsEc2Client
from cml_monitor.clock import utcnow
from cml_monitor.cml import CmlControllerClient
from cml_monitor.domain import WorkerStatus
from cml_monitor.domain.collections import TRIGGER_ANCHOR
from cml_monitor.monitoring import (
    FleetCollector,
    FleetMonitor,
    MonitoredWorkers,
    ObserverPublisher,
    RegionJobs,
    WorkerMonitoringScheduler,
    build_job_store,
)
from cml_monitor.storage import CMLWorkerRepository, create_engine, drop_all, migrate
from cml_monitor.storage.alerts import AlertRepository
from cml_monitor.storage.tables import workers as workers_table

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_simulator(
    args: argparse.Namespace, workdir: Path, *, nice: int = 0
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    out = workdir / "fleet.json"
    process = subprocess.Popen(
        [
            *(["nice", "-n", str(nice)] if nice else []),
            sys.executable,
            "-m",
            "cml_fleet_sim",
            "--workers",
            str(args.workers),
            "--regions",
            str(args.regions),
            "--controllers",
            str(args.controllers),
            "--controller-latency",
            "0.05",
            "--throttling",
            "--out",
            str(out),
        ],
    )
    deadline = time.monotonic() + 300
    while not out.exists() or not out.stat().st_size:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the simulator did not start")
        time.sleep(0.1)
    time.sleep(0.2)
    return process, json.loads(out.read_text())


async def prepare_database(url: str, fleet: dict[str, Any]) -> list[str]:
    engine = create_engine(url)
    if url.startswith("postgresql"):
        await drop_all(engine)
    await migrate(engine)
    now = datetime.now(UTC)
    rows = []
    for number, instance in enumerate(fleet["instances"]):
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "name": f"bench-{number:05d}",
                "aws_region": instance["region"],
                "aws_instance_id": instance["instance_id"],
                "cml_url": instance["cml_url"],
                "status": WorkerStatus.UNKNOWN.value,
                "active_labs_count": 0,
                "created_at": now + timedelta(microseconds=number),
                "updated_at": now,
            }
        )
    async with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            await conn.execute(insert(workers_table), rows[start : start + 2000])
    await engine.dispose()
    return [row["id"] for row in rows]


class Counters:
    """Wraps the parts we time without touching their code."""

    def __init__(self) -> None:
        self.events = 0
        self.last_event_at = 0.0
        self.db_write_seconds: list[float] = []
        self.cml_seconds: list[float] = []
        self.job_store_writes = 0
        self.job_store_seconds = 0.0
        self.target = 0
        self.done = asyncio.Event()

    async def observe(self, events: Any) -> None:
        """An observer beside the real chain: counts events, notes when the last one arrived."""
        self.events += len(events)
        self.last_event_at = time.perf_counter()
        if self.events >= self.target:
            self.done.set()


def instrument(
    collector: FleetCollector, store: Any, repository: CMLWorkerRepository, counters: Counters
) -> None:
    original_save = repository.save_collection_async

    async def timed_save(*args: Any, **kwargs: Any) -> set[str]:
        started = time.perf_counter()
        try:
            return await original_save(*args, **kwargs)
        finally:
            counters.db_write_seconds.append(time.perf_counter() - started)

    repository.save_collection_async = timed_save  # type: ignore[method-assign]
    original_read = collector._read_controllers

    async def timed_read(workers: Any, now: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original_read(workers, now)
        finally:
            counters.cml_seconds.append(time.perf_counter() - started)

    collector._read_controllers = timed_read  # type: ignore[method-assign]
    original_update = store.update_job

    def counted_update(job: Any) -> None:
        started = time.perf_counter()
        try:
            original_update(job)
        finally:
            counters.job_store_writes += 1
            counters.job_store_seconds += time.perf_counter() - started

    store.update_job = counted_update  # type: ignore[method-assign]


async def run_monitor(args: argparse.Namespace, fleet: dict[str, Any], database_url: str) -> dict[str, Any]:
    engine = create_engine(database_url)
    repository = CMLWorkerRepository(engine)
    aws = AwsEc2Client(endpoint_url=fleet["url"], max_attempts=8)
    cml = CmlControllerClient(username=USERNAME, password=PASSWORD, timeout=10)
    if args.job_store == "redis":
        redis.Redis.from_url(REDIS_URL).flushdb()
        store = build_job_store(REDIS_URL, database_url)
    else:
        store = build_job_store("", database_url)
    counters = Counters()
    # The real observer chain: the alert engine (the seed's notification handler), no receivers.
    alert_engine = AlertEngine(AlertRepository(engine), [])
    monitored = MonitoredWorkers()
    collector = FleetCollector(repository, aws, cml, metrics_source=args.metrics_source)
    publisher = ObserverPublisher([alert_engine, counters])
    monitor = FleetMonitor(repository, collector, publisher, monitored, poll_interval=args.interval)
    jobs = RegionJobs(store, poll_interval=args.interval, clock=utcnow)
    scheduler = WorkerMonitoringScheduler(monitor, monitored, repository, jobs, poll_interval=args.interval)
    instrument(collector, store, repository, counters)
    n = len(fleet["instances"])
    try:
        counters.target = n
        await scheduler.start_async()  # the warm-up cycle: every job runs now
        async with asyncio.timeout(600):
            await counters.done.wait()
        # The measured cycle: the next instant of the common grid.
        now = datetime.now(UTC)
        elapsed = (now - TRIGGER_ANCHOR).total_seconds()
        due = TRIGGER_ANCHOR + timedelta(seconds=(elapsed // args.interval + 1) * args.interval)
        counters.target = 2 * n
        counters.done.clear()
        counters.db_write_seconds.clear()
        counters.cml_seconds.clear()
        counters.job_store_writes = 0
        counters.job_store_seconds = 0.0
        aws.requests.reset()
        metrics_before = aws.requests.metrics_requested  # reset() keeps this running total
        stats_before = fetch_stats(fleet["url"])
        throttled_before = stats_before["throttled"]
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        due_at = time.perf_counter()
        cpu_before = _cpu_seconds()
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        async with asyncio.timeout(600):
            await counters.done.wait()
        cycle_seconds = counters.last_event_at - due_at
        cpu_seconds = _cpu_seconds() - cpu_before
        if profiler is not None:
            profiler.disable()
            write_profile(profiler, Path(args.profile))
        stats = fetch_stats(fleet["url"])
    finally:
        await scheduler.stop_async()
        await aws.close()
        await cml.close()
        await engine.dispose()
    requests = {f"{s}:{o}": c for (s, o), c in sorted(aws.requests.snapshot().items())}
    return {
        "aws_calls": aws.requests.total(),
        "aws_calls_by_operation": requests,
        "cloudwatch_metrics_requested": aws.requests.metrics_requested - metrics_before,
        "throttled": stats["throttled"] - throttled_before,
        "cml_calls_total": stats["cml_requests"],
        "cml_calls_cycle": stats["cml_requests"] - stats_before["cml_requests"],
        "cycle_seconds": round(cycle_seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "db_write_seconds": round(sum(counters.db_write_seconds), 2),
        "cml_seconds": round(max(counters.cml_seconds, default=0.0), 2),
        "job_store_writes": counters.job_store_writes,
        "job_store_seconds": round(counters.job_store_seconds, 2),
    }


def write_profile(profiler: cProfile.Profile, path: Path) -> None:
    """The measured cycle's profile: the raw stats, and the top functions by own and total time."""
    profiler.dump_stats(str(path))
    report = io.StringIO()
    stats = pstats.Stats(profiler, stream=report)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)
    path.with_suffix(".txt").write_text(report.getvalue())
    print(f"  profile of the measured cycle (event-loop thread only): {path} and {path.with_suffix('.txt')}")


def fetch_stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/sim/stats", timeout=30).json()


async def api_p95(database_url: str, fleet_url: str) -> float:
    from cml_monitor.api.app import create_app
    from cml_monitor.settings import load_settings

    settings = load_settings(
        _env_file=None, database_url=database_url, worker_monitoring_enabled=False, aws_endpoint_url=fleet_url
    )
    app = create_app(settings)
    samples = []
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            for index in range(60):
                started = time.perf_counter()
                response = await client.get(
                    "/api/workers", params={"limit": 100, "offset": (index * 100) % 5000}
                )
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
    samples = sorted(samples[10:])
    return round(samples[int(0.95 * (len(samples) - 1))], 1)


async def run_seed(fleet: dict[str, Any], budget: float) -> dict[str, Any]:
    """The seed's algorithm: three calls per worker, one worker at a time per job."""
    session = get_session()
    config = AioConfig(max_pool_connections=50, retries={"mode": "legacy", "max_attempts": 5})
    instances = fleet["instances"]
    throttled_before = fetch_stats(fleet["url"])["throttled"]
    calls = 0
    completed_calls = 0  # the calls of the workers done or failed (the extrapolation's base)
    mine: ContextVar[list[int] | None] = ContextVar("seed_worker_calls", default=None)
    done = 0
    failed = 0
    started = time.perf_counter()
    deadline = started + budget
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for instance in instances:
        queue.put_nowait(instance)
    async with (
        session.create_client(
            "ec2", region_name="us-east-1", endpoint_url=fleet["url"], config=config
        ) as ec2,
        session.create_client(
            "cloudwatch", region_name="us-east-1", endpoint_url=fleet["url"], config=config
        ) as cw,
    ):

        def count(**_: Any) -> None:
            nonlocal calls
            calls += 1
            worker_calls = mine.get()
            if worker_calls is not None:
                worker_calls[0] += 1

        ec2.meta.events.register("before-send", count)
        cw.meta.events.register("before-send", count)

        async def worker() -> None:
            nonlocal done, failed, completed_calls
            while True:
                try:
                    instance = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                worker_calls = [0]
                mine.set(worker_calls)  # this task's own context
                dims = [{"Name": "InstanceId", "Value": instance["instance_id"]}]
                end = datetime.now(UTC)
                try:
                    await ec2.describe_instance_status(
                        InstanceIds=[instance["instance_id"]], IncludeAllInstances=True
                    )
                    for namespace, metric in (("AWS/EC2", "CPUUtilization"), ("CWAgent", "mem_used_percent")):
                        await cw.get_metric_statistics(
                            Namespace=namespace,
                            MetricName=metric,
                            Dimensions=dims,
                            StartTime=end - timedelta(minutes=5),
                            EndTime=end,
                            Period=300,
                            Statistics=["Average"],
                        )
                    done += 1
                except Exception:
                    failed += 1
                completed_calls += worker_calls[0]

        # The budget holds: the workers still at it when it runs out (retrying a throttled call,
        # say) are stopped, and only the workers done or failed count.
        tasks = [asyncio.ensure_future(worker()) for _ in range(50)]
        _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    elapsed = time.perf_counter() - started
    finished = done + failed == len(instances)
    extrapolated = elapsed if finished or done == 0 else elapsed * len(instances) / max(1, done + failed)
    return {
        "seed_aws_calls": calls
        if finished
        else round(completed_calls * len(instances) / max(1, done + failed)),
        "seed_aws_calls_measured": calls,
        "seed_workers_done": done,
        "seed_workers_failed": failed,
        "seed_throttled": fetch_stats(fleet["url"])["throttled"] - throttled_before,
        "seed_cycle_seconds": round(extrapolated, 1),
        "seed_finished": finished,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--regions", type=int, default=1)
    parser.add_argument(
        "--controllers", type=int, default=1000, help="workers with a CML controller (50 ms each)"
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--job-store", choices=("redis", "database"), default="redis")
    parser.add_argument("--seed-budget", type=float, default=60.0, help="seconds the seed algorithm may run")
    parser.add_argument(
        "--interval", type=int, default=30, help="poll interval; the measured cycle is the 2nd"
    )
    parser.add_argument(
        "--metrics-source",
        choices=("auto", "cloudwatch", "controller"),
        default="auto",
        help="WORKER_METRICS_SOURCE: where CPU and memory come from",
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="profile the measured cycle with cProfile (slows it: time it without this flag)",
    )
    args = parser.parse_args()
    args.controllers = min(args.controllers, args.workers)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        database_url = (
            f"sqlite+aiosqlite:///{workdir / 'bench.db'}" if args.database == "sqlite" else POSTGRES_URL
        )
        simulator, fleet = start_simulator(args, workdir)
        try:
            asyncio.run(prepare_database(database_url, fleet))
            ours = asyncio.run(run_monitor(args, fleet, database_url))
            p95 = asyncio.run(api_p95(database_url, fleet["url"]))
            peak = _rss_mb()
            seed = asyncio.run(run_seed(fleet, args.seed_budget)) if args.seed_budget > 0 else {}
        finally:
            simulator.terminate()
            simulator.wait(30)
    n = args.workers
    print(
        f"\nOne cycle, {n} workers in {args.regions} region(s), {args.controllers} CML controllers at 50 ms, "
        f"database {args.database}, job store {args.job_store}, AWS rate limits on"
    )
    print(f"  AWS calls by operation: {ours['aws_calls_by_operation']}")
    print(f"  formula ceil(N/100) + ceil(2N/500) = {-(-n // 100) + -(-2 * n // 500)}")
    rows = [
        ("AWS calls per cycle", ours["aws_calls"], seed.get("seed_aws_calls")),
        ("throttling errors", ours["throttled"], seed.get("seed_throttled")),
        ("cycle wall seconds", ours["cycle_seconds"], seed.get("seed_cycle_seconds")),
    ]
    print(f"  {'':24s} {'this monitor':>14s} {'seed algorithm':>16s} {'ratio':>8s}")
    for label, mine, theirs in rows:
        ratio = f"{theirs / mine:.0f}x" if theirs and mine else "-"
        print(f"  {label:24s} {mine!s:>14s} {theirs!s:>16s} {ratio:>8s}")
    if seed and not seed["seed_finished"]:
        print(
            f"  (seed stopped after {args.seed_budget:.0f} s: {seed['seed_workers_done']} workers done, "
            f"{seed['seed_aws_calls_measured']} calls made; its totals are extrapolated)"
        )
    print(f"  CPU seconds (monitor process): {ours['cpu_seconds']}   peak RSS: {peak:.0f} MB")
    print(f"  DB write seconds (workers + history, one transaction): {ours['db_write_seconds']}")
    print(f"  CML controllers polled in: {ours['cml_seconds']} s", end="   ")
    per_controller = round(ours["cml_calls_cycle"] / args.controllers, 2) if args.controllers else 0.0
    print(f"CML calls in the cycle: {ours['cml_calls_cycle']} ({per_controller} per controller)")
    print(
        f"  CloudWatch metrics requested ({args.metrics_source}): {ours['cloudwatch_metrics_requested']}"
        f" (${ours['cloudwatch_metrics_requested'] * 0.01 / 1000:.2f} per cycle at $0.01 per 1,000)"
    )
    print(f"  APScheduler job store writes: {ours['job_store_writes']} in {ours['job_store_seconds']} s")
    print(f"  GET /api/workers?limit=100 p95: {p95} ms")
    summary = {
        "workers": n,
        "aws_calls": ours["aws_calls"],
        "seed_aws_calls": seed.get("seed_aws_calls"),
        "throttled": ours["throttled"],
        "seed_throttled": seed.get("seed_throttled"),
        "cycle_seconds": ours["cycle_seconds"],
        "seed_cycle_seconds": seed.get("seed_cycle_seconds"),
        "peak_rss_mb": round(peak, 1),
        "db_write_seconds": ours["db_write_seconds"],
        "api_p95_ms": p95,
        "cpu_seconds": ours["cpu_seconds"],
        "cml_seconds": ours["cml_seconds"],
        "cml_calls_per_controller": per_controller,
        "metrics_source": args.metrics_source,
        "cloudwatch_metrics_requested": ours["cloudwatch_metrics_requested"],
        "job_store_writes": ours["job_store_writes"],
        "job_store_seconds": ours["job_store_seconds"],
        "database": args.database,
        "job_store": args.job_store,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
