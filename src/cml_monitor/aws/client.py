"""`AwsEc2Client`: the one AWS object the monitor is handed (EC2 and CloudWatch, many regions).

It composes a client pool and one reader per service; a fleet of N workers costs
ceil(N/100) + ceil(2N/500) requests a cycle rather than 3N (see `ec2` and `cloudwatch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from aiobotocore.session import AioSession

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain.discovery import TaggedInstance

from .cloudwatch import CloudWatchReader, Utilization
from .ec2 import Ec2Reader, InstanceStatus
from .pool import ClientPool
from .requests import RequestCounter


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
        managed_tag: tuple[str, str] = ("cml-monitor:managed", "true"),
    ) -> None:
        self._pool = ClientPool(
            endpoint_url=endpoint_url,
            max_attempts=max_attempts,
            retry_mode=retry_mode,
            request_counter=request_counter,
            session=session,
            max_pool_connections=max_pool_connections,
            read_timeout=read_timeout,
        )
        self.requests = self._pool.requests
        self._ec2 = Ec2Reader(self._pool, concurrency=concurrency, managed_tag=managed_tag)
        self._cloudwatch = CloudWatchReader(
            self._pool, clock=clock, dimension_ttl=dimension_cache_ttl, concurrency=concurrency
        )

    async def __aenter__(self) -> AwsEc2Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._pool.close()

    async def describe_instance_statuses(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, InstanceStatus]:
        return await self._ec2.describe_instance_statuses(aws_region, instance_ids)

    async def describe_instances_by_tags(self, aws_region: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        return await self._ec2.describe_instances_by_tags(aws_region, tags)

    async def list_tagged_instances(
        self, aws_region: str, tags: dict[str, str], *, include_terminated: bool = False
    ) -> list[TaggedInstance]:
        return await self._ec2.list_tagged_instances(aws_region, tags, include_terminated=include_terminated)

    async def change_instance_state(self, aws_region: str, instance_id: str, action: str) -> str:
        return await self._ec2.change_instance_state(aws_region, instance_id, action)

    async def get_utilization(
        self,
        aws_region: str,
        instance_ids: Sequence[str],
        *,
        relative_start_time: timedelta = timedelta(minutes=15),
    ) -> dict[str, Utilization]:
        return await self._cloudwatch.get_utilization(aws_region, list(instance_ids), relative_start_time)

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
