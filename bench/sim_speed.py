"""How fast the simulator answers, through the real botocore client.

    python -m bench.sim_speed [--instances 1000] [--repeat 20]

Targets (issue: simulator): GetMetricData with 500 queries under 200 ms, and
DescribeInstanceStatus over 1,000 instances under 100 ms, however long the simulator has run
(metrics are computed from load profiles, not stored).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import boto3

from cml_fleet_sim.simulator import FleetSimulator


def _timed(call, repeat: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    call()  # warm the connection
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    sim = FleetSimulator(seed=1)
    url = sim.start()
    try:
        ids = [i.instance_id for i in sim.add_workers(args.instances, with_controllers=False)]
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url)
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=url)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        queries = []
        for index, instance_id in enumerate(ids[:250]):
            for prefix, namespace, metric in (
                ("c", "AWS/EC2", "CPUUtilization"),
                ("m", "CWAgent", "mem_used_percent"),
            ):
                queries.append(
                    {
                        "Id": f"{prefix}{index}",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": namespace,
                                "MetricName": metric,
                                "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
                            },
                            "Period": 300,
                            "Stat": "Average",
                        },
                    }
                )
        metric_data = _timed(
            lambda: cloudwatch.get_metric_data(
                MetricDataQueries=queries, StartTime=end - timedelta(minutes=15), EndTime=end
            ),
            args.repeat,
        )
        describe = _timed(
            lambda: ec2.describe_instance_status(IncludeAllInstances=True, MaxResults=1000), args.repeat
        )
    finally:
        sim.stop()
    figures = {
        "instances": args.instances,
        "get_metric_data_500_queries": metric_data,
        "describe_instance_status_1000": describe,
    }
    for label, figure, target in (
        ("GetMetricData, 500 queries", metric_data, 200),
        ("DescribeInstanceStatus, 1000 instances", describe, 100),
    ):
        median, p95 = figure["median_ms"], figure["p95_ms"]
        print(f"{label:40s} median {median} ms, p95 {p95} ms (target < {target} ms)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
