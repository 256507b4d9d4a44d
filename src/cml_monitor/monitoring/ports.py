"""What monitoring needs of the outside world, declared here and implemented elsewhere.

`storage` implements `WorkerStore` and `RegionLeases` without importing this package, and
`aws`/`cml` (or a fake in a unit test) implement the two clients; the collector and the region
run are written against these protocols only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from cml_monitor.aws import InstanceStatus, Utilization
from cml_monitor.domain import MetricSample, Worker
from cml_monitor.domain.cml import ControllerReading
from cml_monitor.domain.collections import RegionCollection, RegionOutcome


class WorkerStore(Protocol):
    async def get_by_id_async(self, worker_id: str) -> Worker | None: ...

    async def get_many_async(self, worker_ids: Sequence[str]) -> dict[str, Worker]: ...

    async def list_monitorable_async(self, aws_region: str | None = None) -> list[tuple[str, str]]: ...

    async def save_collection_async(
        self,
        updated: Sequence[Worker],
        samples: Sequence[MetricSample],
        seen: Mapping[str, str] | None = None,
        collected_before: Mapping[str, datetime | None] | None = None,
    ) -> set[str]: ...


class RegionLeases(Protocol):
    async def acquire(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool: ...


class AwsClient(Protocol):
    """What the collector needs of AWS (`AwsEc2Client`, or a fake in unit tests)."""

    async def describe_instance_statuses(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, InstanceStatus]: ...

    async def get_utilization(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, Utilization]: ...


class CmlClient(Protocol):
    async def read_controller(
        self, cml_url: str, *, licensing: bool = False, activity: bool = False
    ) -> ControllerReading: ...


class CollectionStatusStore(Protocol):
    async def record(self, outcome: RegionOutcome, *, interval_seconds: int, holder: str) -> None:
        """Remember one region run in the shared database; raises when the database does."""
        ...

    async def read(self) -> tuple[list[RegionCollection], dict[str, datetime]]:
        """Every region's remembered collection, and the regions with workers to watch mapped to
        when their first worker was registered; raises when the database does."""
        ...
