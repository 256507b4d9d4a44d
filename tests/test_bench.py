"""The scale benchmark's contract at small N, and throttling that loses no update."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cml_fleet_sim.fleet import TokenBucket
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.aws import AwsEc2Client
from cml_monitor.monitoring import FleetCollector
from cml_monitor.storage import CMLWorkerRepository

from .conftest import POSTGRES_URL, REGION
from .helpers import register

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "workers",
    "aws_calls",
    "seed_aws_calls",
    "throttled",
    "seed_throttled",
    "cycle_seconds",
    "seed_cycle_seconds",
    "peak_rss_mb",
    "db_write_seconds",
    "api_p95_ms",
}


def test_the_bench_prints_its_json_line_and_meets_the_formula(redis_url: str) -> None:
    # The bench's job store is the tests' Redis database (it empties it), never its own default.
    env = {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_POSTGRES_URL": POSTGRES_URL}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cycle",
            "--workers",
            "120",
            "--controllers",
            "10",
            "--interval",
            "3",
            "--seed-budget",
            "3",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert KEYS <= set(figures)
    assert figures["workers"] == 120
    assert figures["aws_calls"] == -(-120 // 100) + -(-2 * 120 // 500)  # 2 + 1
    assert figures["throttled"] == 0
    assert figures["seed_aws_calls"] >= 3 * 120 * 0.9


async def test_a_throttled_update_is_not_lost_it_comes_in_the_next_cycle(
    sqlite_repository: CMLWorkerRepository,
) -> None:
    sim = FleetSimulator(instant_transitions=True, seed=2)
    sim.start()
    client = AwsEc2Client(endpoint_url=sim.url, max_attempts=1)  # no retries: the cycle fails
    try:
        instances = sim.add_workers(150, with_controllers=False)
        workers = [await register(sqlite_repository, i.instance_id) for i in instances]
        sim.set_faults(throttling=True)
        sim.fleet._buckets[(REGION, "ec2-describe")] = TokenBucket(1, 0.001)  # one call, then dry
        collector = FleetCollector(sqlite_repository, client)
        first = await collector.collect([w.id for w in workers])
        failed = list(first.failed)
        assert failed and all("RequestLimitExceeded" in first.failed[w] for w in failed)
        sim.fleet.reset_buckets()  # the bucket refilled by the next interval
        second = await collector.collect([w.id for w in workers])
        assert not second.failed and len(second.events) == len(workers)
        for worker_id in failed:
            stored = await sqlite_repository.get_by_id_async(worker_id)
            assert stored.last_collected_at is not None and stored.status.value == "running"
    finally:
        await client.close()
        sim.stop()
