"""`AwsEc2Client`: EC2 state, status checks and CloudWatch utilisation, batched across workers.

One long-lived aiobotocore client per (service, region), created on first use and closed with
the client. Calls are batched to the API's own limits (100 instance ids per
`DescribeInstanceStatus`, 500 queries per `GetMetricData`), so a fleet of N workers costs
ceil(N/100) + ceil(2N/500) requests a cycle rather than 3N. Throttling and 5xx answers are
retried by botocore's `standard` retry mode (exponential backoff with full jitter), and every
HTTP attempt, retries included, is counted by service and operation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from cml_monitor.clock import Clock, utcnow

from .requests import RequestCounter

logger = logging.getLogger(__name__)

DESCRIBE_BATCH = 100
DESCRIBE_PAGE = 1000
PAGE_THRESHOLD = 1000  # below this many workers in a region, ids are always cheaper
METRIC_QUERY_BATCH = 500
PERIOD_SECONDS = 300
CPU_METRIC = ("AWS/EC2", "CPUUtilization")
MEMORY_METRIC = ("CWAgent", "mem_used_percent")
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")


class AwsError(RuntimeError):
    """An AWS call failed after its retries; the message names the operation and the region."""


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """What `DescribeInstanceStatus` says of one instance (`None` where EC2 said nothing)."""

    instance_id: str
    instance_state: str | None
    system_status: str | None
    instance_status: str | None
    found: bool = True

    def as_status_checks(self) -> dict[str, Any]:
        """The seed's `get_instance_status_checks` shape."""
        return {
            "instance_id": self.instance_id,
            "instance_state": self.instance_state,
            "system_status": self.system_status,
            "instance_status": self.instance_status,
        }


@dataclass(frozen=True, slots=True)
class Utilization:
    """Average CPU and memory over the newest complete period; `None` is "no datapoints"."""

    avg_cpu_utilization: float | None
    avg_memory_utilization: float | None


@dataclass(slots=True)
class _DimensionCache:
    fetched_at: datetime
    dimensions: dict[str, list[dict[str, str]]]


def _chunked(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _newest_value(result: dict[str, Any]) -> float | None:
    """The value of the newest datapoint, whatever order CloudWatch returned them in."""
    pairs = list(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
    if not pairs:
        return None
    return float(max(pairs, key=lambda pair: pair[0])[1])


class AwsEc2Client:
    """Batched, retrying, counted access to EC2 and CloudWatch for many regions."""

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        retry_mode: str = "standard",
        request_counter: RequestCounter | None = None,
        session: AioSession | None = None,
        clock: Clock = utcnow,
        dimension_cache_ttl: timedelta = timedelta(hours=1),
        concurrency: int = 4,
        max_pool_connections: int = 20,
        read_timeout: float = 30.0,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._session = session or get_session()
        self._config = AioConfig(
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            connect_timeout=5,
            read_timeout=read_timeout,
        )
        self.requests = request_counter or RequestCounter()
        self._clock = clock
        self._dimension_ttl = dimension_cache_ttl
        self._dimensions: dict[str, _DimensionCache] = {}
        self._region_sizes: dict[str, int] = {}
        self._concurrency = concurrency
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> AwsEc2Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        async with self._lock:
            self._clients.clear()
            await self._stack.aclose()
            self._stack = AsyncExitStack()

    async def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = await self._stack.enter_async_context(
                    self._session.create_client(
                        service,
                        region_name=region,
                        endpoint_url=self._endpoint_url,
                        config=self._config,
                    )
                )
                client.meta.events.register("before-send", self.requests.on_before_send)
                self._clients[key] = client
        return client

    async def _call(self, service: str, region: str, operation: str, **params: Any) -> Any:
        client = await self._client(service, region)
        try:
            return await getattr(client, operation)(**params)
        except ClientError:
            raise
        except (TimeoutError, BotoCoreError, ResponseParserError, OSError) as exc:
            raise AwsError(f"{service} {operation} in {region} failed: {exc}") from exc

    async def _pages(
        self, service: str, region: str, operation: str, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated operation (botocore's paginator; each page is counted)."""
        client = await self._client(service, region)
        try:
            async for page in client.get_paginator(operation).paginate(**params):
                yield page
        except (ClientError, TimeoutError, BotoCoreError, ResponseParserError, OSError) as exc:
            raise AwsError(f"{service} {operation} in {region} failed: {exc}") from exc

    # -- EC2 -------------------------------------------------------------------------------

    async def describe_instance_statuses(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, InstanceStatus]:
        """State and status checks of the given instances, 100 ids per request.

        An id EC2 does not know (`InvalidInstanceID.NotFound`) is reported with `found=False`
        instead of failing the whole batch it came in. For large fleets, paging through the
        whole region (1,000 instances per request) is cheaper than 100 ids per request; the
        client pages whenever the region's size, learnt from the last paging, makes it so.
        """
        ids = list(dict.fromkeys(instance_ids))
        if self._paging_is_cheaper(aws_region, len(ids)):
            return await self._describe_region(aws_region, ids)
        semaphore = asyncio.Semaphore(self._concurrency)

        async def one_batch(batch: Sequence[str]) -> dict[str, InstanceStatus]:
            async with semaphore:
                return await self._describe_batch(aws_region, list(batch))

        results: dict[str, InstanceStatus] = {}
        for part in await asyncio.gather(*(one_batch(b) for b in _chunked(ids, DESCRIBE_BATCH))):
            results.update(part)
        return results

    def _paging_is_cheaper(self, region: str, wanted: int) -> bool:
        if wanted < PAGE_THRESHOLD:
            return False
        known = self._region_sizes.get(region)
        if known is None:
            return True  # learn the region's size once
        return math.ceil(known / DESCRIBE_PAGE) < math.ceil(wanted / DESCRIBE_BATCH)

    async def _describe_region(self, region: str, ids: list[str]) -> dict[str, InstanceStatus]:
        wanted = set(ids)
        results: dict[str, InstanceStatus] = {}
        seen = 0
        pages = self._pages(
            "ec2",
            region,
            "describe_instance_status",
            IncludeAllInstances=True,
            PaginationConfig={"PageSize": DESCRIBE_PAGE},
        )
        async for response in pages:
            for item in response.get("InstanceStatuses", []):
                seen += 1
                instance_id = item["InstanceId"]
                if instance_id in wanted:
                    results[instance_id] = InstanceStatus(
                        instance_id=instance_id,
                        instance_state=item.get("InstanceState", {}).get("Name"),
                        system_status=item.get("SystemStatus", {}).get("Status"),
                        instance_status=item.get("InstanceStatus", {}).get("Status"),
                    )
        self._region_sizes[region] = seen
        for instance_id in ids:
            results.setdefault(instance_id, InstanceStatus(instance_id, None, None, None, False))
        return results

    async def _describe_batch(self, region: str, ids: list[str]) -> dict[str, InstanceStatus]:
        results: dict[str, InstanceStatus] = {}
        remaining = ids
        while remaining:
            try:
                response = await self._call(
                    "ec2",
                    region,
                    "describe_instance_status",
                    InstanceIds=remaining,
                    IncludeAllInstances=True,
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                message = exc.response.get("Error", {}).get("Message", "")
                missing = set(_INSTANCE_ID.findall(message)) & set(remaining)
                if code.startswith("InvalidInstanceID") and missing:
                    for instance_id in missing:
                        results[instance_id] = InstanceStatus(instance_id, None, None, None, False)
                    remaining = [i for i in remaining if i not in missing]
                    continue
                raise AwsError(f"ec2 DescribeInstanceStatus in {region} failed: {exc}") from exc
            for item in response.get("InstanceStatuses", []):
                instance_id = item["InstanceId"]
                results[instance_id] = InstanceStatus(
                    instance_id=instance_id,
                    instance_state=item.get("InstanceState", {}).get("Name"),
                    system_status=item.get("SystemStatus", {}).get("Status"),
                    instance_status=item.get("InstanceStatus", {}).get("Status"),
                )
            for instance_id in remaining:
                results.setdefault(instance_id, InstanceStatus(instance_id, None, None, None, False))
            break
        return results

    async def describe_instances_by_tags(self, aws_region: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        """Instances (not terminated) carrying all the given tags: id, state and Name tag."""
        filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
        filters.append(
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            }
        )
        found: list[dict[str, Any]] = []
        pages = self._pages(
            "ec2", aws_region, "describe_instances", Filters=filters, PaginationConfig={"PageSize": 1000}
        )
        async for response in pages:
            for reservation in response.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    name = next(
                        (t["Value"] for t in instance.get("Tags", []) if t.get("Key") == "Name"),
                        None,
                    )
                    found.append(
                        {
                            "instance_id": instance["InstanceId"],
                            "state": instance.get("State", {}).get("Name"),
                            "name": name,
                        }
                    )
        return found

    async def change_instance_state(self, aws_region: str, instance_id: str, action: str) -> str:
        """`start` or `stop` one instance; returns the state EC2 reports right after."""
        operation = {"start": "start_instances", "stop": "stop_instances"}[action]
        key = {"start": "StartingInstances", "stop": "StoppingInstances"}[action]
        try:
            response = await self._call("ec2", aws_region, operation, InstanceIds=[instance_id])
        except ClientError as exc:
            raise AwsError(f"ec2 {operation} of {instance_id} in {aws_region} failed: {exc}") from exc
        changes = response.get(key) or [{}]
        return str(changes[0].get("CurrentState", {}).get("Name", "unknown"))

    # -- CloudWatch ------------------------------------------------------------------------

    async def _memory_dimensions(self, region: str) -> dict[str, list[dict[str, str]]]:
        """Which dimension set the CloudWatch agent publishes memory under, per instance.

        The agent often appends ImageId/InstanceType (or an AutoScalingGroupName), and a
        `GetMetricData` query must name the exact set; `ListMetrics` finds it. Cached per
        region for an hour, so steady-state cycles make no `ListMetrics` call.
        """
        cached = self._dimensions.get(region)
        now = self._clock()
        if cached and now - cached.fetched_at < self._dimension_ttl:
            return cached.dimensions
        dimensions: dict[str, list[dict[str, str]]] = {}
        pages = self._pages(
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
        self._dimensions[region] = _DimensionCache(now, dimensions)
        return dimensions

    async def get_utilization(
        self,
        aws_region: str,
        instance_ids: Sequence[str],
        *,
        relative_start_time: timedelta = timedelta(minutes=15),
    ) -> dict[str, Utilization]:
        """Average CPU and memory per instance, 500 metric queries per `GetMetricData`.

        The window ends at the last whole minute and is cut into 5-minute periods; the newest
        period with data wins. An instance with no datapoints gets `None`, never 0.0.
        """
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return {}
        memory_dims = await self._memory_dimensions(aws_region)
        end = self._clock().astimezone(UTC).replace(second=0, microsecond=0)
        span = max(PERIOD_SECONDS, int(relative_start_time.total_seconds()))
        span = math.ceil(span / PERIOD_SECONDS) * PERIOD_SECONDS
        start = end - timedelta(seconds=span)

        queries: list[dict[str, Any]] = []
        owners: dict[str, tuple[str, str]] = {}
        for index, instance_id in enumerate(ids):
            for prefix, (namespace, metric), dims in (
                ("c", CPU_METRIC, [{"Name": "InstanceId", "Value": instance_id}]),
                (
                    "m",
                    MEMORY_METRIC,
                    memory_dims.get(instance_id, [{"Name": "InstanceId", "Value": instance_id}]),
                ),
            ):
                query_id = f"{prefix}{index}"
                owners[query_id] = (instance_id, prefix)
                queries.append(
                    {
                        "Id": query_id,
                        "MetricStat": {
                            "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dims},
                            "Period": PERIOD_SECONDS,
                            "Stat": "Average",
                        },
                        "ReturnData": True,
                    }
                )

        semaphore = asyncio.Semaphore(self._concurrency)

        async def one_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
            async with semaphore:
                return await self._metric_data_batch(aws_region, batch, start, end)

        values: dict[str, dict[str, float | None]] = {i: {"c": None, "m": None} for i in ids}
        batches = [queries[i : i + METRIC_QUERY_BATCH] for i in range(0, len(queries), METRIC_QUERY_BATCH)]
        for results in await asyncio.gather(*(one_batch(b) for b in batches)):
            for result in results:
                instance_id, prefix = owners[result["Id"]]
                value = _newest_value(result)
                if value is not None:
                    values[instance_id][prefix] = value
        return {i: Utilization(v["c"], v["m"]) for i, v in values.items()}

    async def _metric_data_batch(
        self, region: str, queries: list[dict[str, Any]], start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        pages = self._pages(
            "cloudwatch",
            region,
            "get_metric_data",
            MetricDataQueries=queries,
            StartTime=start,
            EndTime=end,
            ScanBy="TimestampDescending",
        )
        async for response in pages:
            for result in response.get("MetricDataResults", []):
                entry = merged.setdefault(result["Id"], {"Id": result["Id"], "Timestamps": [], "Values": []})
                entry["Timestamps"].extend(result.get("Timestamps", []))
                entry["Values"].extend(result.get("Values", []))
        return list(merged.values())

    # -- The seed's per-instance calls, kept for scripts and troubleshooting -----------------

    async def get_instance_status_checks(self, aws_region: str, instance_id: str) -> dict[str, Any]:
        statuses = await self.describe_instance_statuses(aws_region, [instance_id])
        return statuses[instance_id].as_status_checks()

    async def get_instance_resources_utilization(
        self, aws_region: str, instance_id: str, relative_start_time: timedelta = timedelta(minutes=5)
    ) -> Utilization:
        result = await self.get_utilization(
            aws_region, [instance_id], relative_start_time=relative_start_time
        )
        return result[instance_id]
