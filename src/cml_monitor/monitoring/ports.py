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
    """The workers' table. Every method raises what the database raises; the region run notes
    that as our own outage and no worker is judged for it."""

    async def get_by_id_async(self, worker_id: str) -> Worker | None:
        """The worker, or None when no worker has this id (removed, or never registered)."""
        ...

    async def get_many_async(self, worker_ids: Sequence[str]) -> dict[str, Worker]:
        """The workers among these ids that exist, by id; missing ids are simply absent."""
        ...

    async def list_monitorable_async(self, aws_region: str | None = None) -> list[tuple[str, str]]:
        """(id, region) of every worker not terminated, in one region or all."""
        ...

    async def save_collection_async(
        self,
        updated: Sequence[Worker],
        samples: Sequence[MetricSample],
        seen: Mapping[str, str] | None = None,
        collected_before: Mapping[str, datetime | None] | None = None,
    ) -> set[str]:
        """Write a collection's workers and history rows in one transaction; returns the ids written.

        A worker deleted meanwhile, one a newer collection already saved, or (with `seen` and
        `collected_before`, each worker's status and last collection when the pass loaded it)
        one whose status an EC2 event changed meanwhile is not written, nor are its samples.
        """
        ...


class RegionLeases(Protocol):
    async def acquire(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew the lease `name` for `holder` until `now + ttl`; False while another
        holder's lease has not run out. Atomic across replicas; raises what the database raises."""
        ...


class AwsClient(Protocol):
    """What the collector needs of AWS (`AwsEc2Client`, or a fake in unit tests)."""

    async def describe_instance_statuses(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, InstanceStatus]:
        """State and status checks of each instance, in as few calls as EC2 allows.

        Every id is in the answer: one EC2 does not know has `found=False`. Raises `AwsError`
        when AWS fails after its retries (the whole region's pass then fails).
        """
        ...

    async def get_utilization(self, aws_region: str, instance_ids: Sequence[str]) -> dict[str, Utilization]:
        """Average CPU and memory per instance over the last minutes; a value CloudWatch does not
        have is None (never 0). Raises `AwsError` when AWS fails after its retries."""
        ...


class CmlClient(Protocol):
    async def read_controller(
        self, cml_url: str, *, licensing: bool = False, activity: bool = False
    ) -> ControllerReading:
        """What one controller says (health, stats, labs; licensing and user activity when
        asked), within one deadline. Never raises for the controller's sake: an unreachable or
        failing controller comes back as a reading with `reachable=False` and its errors."""
        ...


class CollectionStatusStore(Protocol):
    async def record(self, outcome: RegionOutcome, *, interval_seconds: int, holder: str) -> None:
        """Remember one region run in the shared database; raises when the database does."""
        ...

    async def read(self) -> tuple[list[RegionCollection], dict[str, datetime]]:
        """Every region's remembered collection, and the regions with workers to watch mapped to
        when their first worker was registered; raises when the database does."""
        ...
