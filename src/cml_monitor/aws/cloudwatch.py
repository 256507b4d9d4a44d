"""CloudWatch: average CPU and memory of many instances, 500 metric queries per `GetMetricData`.

CPU is `AWS/EC2 CPUUtilization`; memory is the CloudWatch agent's `CWAgent mem_used_percent`,
whose dimension set differs between agent configurations, so it is discovered by `ListMetrics`
and cached per region.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cml_monitor.clock import Clock, utcnow

from .ec2 import chunked
from .pool import ClientPool

METRIC_QUERY_BATCH = 500
PERIOD_SECONDS = 300
CPU_METRIC = ("AWS/EC2", "CPUUtilization")
MEMORY_METRIC = ("CWAgent", "mem_used_percent")
Dimensions = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Utilization:
    """Average CPU and memory over the newest complete period; `None` is "no datapoints"."""

    avg_cpu_utilization: float | None
    avg_memory_utilization: float | None


def newest_value(result: dict[str, Any]) -> float | None:
    """The value of the newest datapoint, whatever order CloudWatch returned them in."""
    pairs = list(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
    if not pairs:
        return None
    return float(max(pairs, key=lambda pair: pair[0])[1])


def metric_query(query_id: str, metric: tuple[str, str], dimensions: Dimensions) -> dict[str, Any]:
    namespace, name = metric
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
            "Period": PERIOD_SECONDS,
            "Stat": "Average",
        },
        "ReturnData": True,
    }


class MemoryDimensionCache:
    """Which dimension set the CloudWatch agent publishes memory under, per instance.

    The agent often appends ImageId/InstanceType (or an AutoScalingGroupName), and a
    `GetMetricData` query must name the exact set; `ListMetrics` finds it. Cached per region
    for an hour, so steady-state cycles make no `ListMetrics` call.
    """

    def __init__(self, pool: ClientPool, *, clock: Clock, ttl: timedelta) -> None:
        self._pool = pool
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[datetime, dict[str, Dimensions]]] = {}

    async def for_region(self, region: str) -> dict[str, Dimensions]:
        now = self._clock()
        cached = self._cache.get(region)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        dimensions: dict[str, Dimensions] = {}
        pages = self._pool.pages(
            "cloudwatch", region, "list_metrics", Namespace=MEMORY_METRIC[0], MetricName=MEMORY_METRIC[1]
        )
        async for response in pages:
            for metric in response.get("Metrics", []):
                dims = metric.get("Dimensions", [])
                instance_id = next((d["Value"] for d in dims if d["Name"] == "InstanceId"), None)
                if instance_id is None:
                    continue
                known = dimensions.get(instance_id)
                if known is None or len(dims) < len(known):
                    dimensions[instance_id] = [{"Name": d["Name"], "Value": d["Value"]} for d in dims]
        self._cache[region] = (now, dimensions)
        return dimensions


class CloudWatchReader:
    def __init__(
        self, pool: ClientPool, *, clock: Clock = utcnow, dimension_ttl: timedelta, concurrency: int = 4
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._concurrency = concurrency
        self._memory_dimensions = MemoryDimensionCache(pool, clock=clock, ttl=dimension_ttl)

    async def get_utilization(
        self, aws_region: str, instance_ids: list[str], relative_start_time: timedelta
    ) -> dict[str, Utilization]:
        """Average CPU and memory per instance.

        The window ends at the last whole minute and is cut into 5-minute periods; the newest
        period with data wins. An instance with no datapoints gets `None`, never 0.0.
        """
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return {}
        memory_dims = await self._memory_dimensions.for_region(aws_region)
        end = self._clock().astimezone(UTC).replace(second=0, microsecond=0)
        span = max(PERIOD_SECONDS, int(relative_start_time.total_seconds()))
        start = end - timedelta(seconds=math.ceil(span / PERIOD_SECONDS) * PERIOD_SECONDS)

        queries: list[dict[str, Any]] = []
        owners: dict[str, tuple[str, str]] = {}
        for index, instance_id in enumerate(ids):
            by_id = [{"Name": "InstanceId", "Value": instance_id}]
            for prefix, metric, dims in (
                ("c", CPU_METRIC, by_id),
                ("m", MEMORY_METRIC, memory_dims.get(instance_id, by_id)),
            ):
                owners[f"{prefix}{index}"] = (instance_id, prefix)
                queries.append(metric_query(f"{prefix}{index}", metric, dims))

        semaphore = asyncio.Semaphore(self._concurrency)

        async def one_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
            async with semaphore:
                return await self._metric_data(aws_region, batch, start, end)

        values: dict[str, dict[str, float | None]] = {i: {"c": None, "m": None} for i in ids}
        batches = [list(b) for b in chunked(queries, METRIC_QUERY_BATCH)]
        for results in await asyncio.gather(*(one_batch(b) for b in batches)):
            for result in results:
                instance_id, prefix = owners[result["Id"]]
                value = newest_value(result)
                if value is not None:
                    values[instance_id][prefix] = value
        return {i: Utilization(v["c"], v["m"]) for i, v in values.items()}

    async def _metric_data(
        self, region: str, queries: list[dict[str, Any]], start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        pages = self._pool.pages(
            "cloudwatch",
            region,
            "get_metric_data",
            MetricDataQueries=queries,
            StartTime=start,
            EndTime=end,
            ScanBy="TimestampDescending",
        )
        async for response in pages:
            self._pool.requests.count_metrics(len(queries))
            for result in response.get("MetricDataResults", []):
                entry = merged.setdefault(result["Id"], {"Id": result["Id"], "Timestamps": [], "Values": []})
                entry["Timestamps"].extend(result.get("Timestamps", []))
                entry["Values"].extend(result.get("Values", []))
        return list(merged.values())
