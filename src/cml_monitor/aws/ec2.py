"""EC2: instance state and status checks for many instances, tag import, start and stop.

`DescribeInstanceStatus` takes 100 ids a call, or pages through a whole region 1,000
instances a call; whichever costs fewer calls for the region's size (learnt from the last
paging) is used, so a fleet of N workers costs ceil(N/100) calls at most.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from cml_monitor.domain.discovery import TaggedInstance
from cml_monitor.domain.scheduled_events import ScheduledEvent
from cml_monitor.domain.text import clean, clean_optional

from .pool import AwsError, ClientPool

DESCRIBE_BATCH = 100
DESCRIBE_PAGE = 1000
PAGE_THRESHOLD = 1000  # below this many workers in a region, ids are always cheaper
# EC2 names the unknown ids only in the message text of InvalidInstanceID.NotFound.
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """What `DescribeInstanceStatus` says of one instance (`None` where EC2 said nothing)."""

    instance_id: str
    instance_state: str | None
    system_status: str | None
    instance_status: str | None
    found: bool = True
    scheduled_events: tuple[ScheduledEvent, ...] = ()

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> InstanceStatus:
        # Strings are stored and shown: control characters (a NUL PostgreSQL refuses) removed.
        return cls(
            instance_id=clean(item["InstanceId"]),
            instance_state=clean_optional(item.get("InstanceState", {}).get("Name")),
            system_status=clean_optional(item.get("SystemStatus", {}).get("Status")),
            instance_status=clean_optional(item.get("InstanceStatus", {}).get("Status")),
            scheduled_events=tuple(
                ScheduledEvent(
                    code=clean(event.get("Code", "unknown")),
                    description=clean_optional(event.get("Description")),
                    not_before=event.get("NotBefore"),
                    not_after=event.get("NotAfter"),
                )
                for event in item.get("Events", [])
            ),
        )

    @classmethod
    def not_found(cls, instance_id: str) -> InstanceStatus:
        return cls(instance_id, None, None, None, False)

    def as_status_checks(self) -> dict[str, Any]:
        """The seed's `get_instance_status_checks` shape."""
        return {
            "instance_id": self.instance_id,
            "instance_state": self.instance_state,
            "system_status": self.system_status,
            "instance_status": self.instance_status,
        }


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unknown_instance_ids(error: ClientError, asked: Sequence[str]) -> set[str]:
    """The ids an `InvalidInstanceID.*` error names among those asked (empty for other errors)."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    if not code.startswith("InvalidInstanceID"):
        return set()
    return set(_INSTANCE_ID.findall(message)) & set(asked)


class ActionNotPermitted(AwsError):
    """IAM refused a stop, start or reboot (`UnauthorizedOperation`): the message says which tag
    the instance needs and how to add it."""


class Ec2Reader:
    def __init__(
        self,
        pool: ClientPool,
        *,
        concurrency: int = 4,
        managed_tag: tuple[str, str] = ("cml-monitor:managed", "true"),
    ) -> None:
        self._pool = pool
        self._concurrency = concurrency
        self._managed_tag = managed_tag
        self._region_sizes: dict[str, int] = {}

    async def describe_instance_statuses(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, InstanceStatus]:
        """State and status checks of the given instances.

        An id EC2 does not know is reported with `found=False` instead of failing the batch
        it came in.
        """
        ids = list(dict.fromkeys(instance_ids))
        if self._paging_is_cheaper(aws_region, len(ids)):
            return await self._describe_region(aws_region, ids)
        semaphore = asyncio.Semaphore(self._concurrency)

        async def one_batch(batch: Sequence[str]) -> dict[str, InstanceStatus]:
            async with semaphore:
                return await self._describe_ids(aws_region, list(batch))

        results: dict[str, InstanceStatus] = {}
        for part in await asyncio.gather(*(one_batch(b) for b in chunked(ids, DESCRIBE_BATCH))):
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
        pages = self._pool.pages(
            "ec2",
            region,
            "describe_instance_status",
            IncludeAllInstances=True,
            PaginationConfig={"PageSize": DESCRIBE_PAGE},
        )
        async for response in pages:
            for item in response.get("InstanceStatuses", []):
                seen += 1
                if item["InstanceId"] in wanted:
                    results[item["InstanceId"]] = InstanceStatus.from_item(item)
        self._region_sizes[region] = seen
        return {i: results.get(i) or InstanceStatus.not_found(i) for i in ids}

    async def _describe_ids(self, region: str, ids: list[str]) -> dict[str, InstanceStatus]:
        """Up to 100 ids; ids EC2 calls unknown are set aside and the rest asked again."""
        results: dict[str, InstanceStatus] = {}
        remaining = ids
        while remaining:
            try:
                response = await self._pool.call(
                    "ec2", region, "describe_instance_status", InstanceIds=remaining, IncludeAllInstances=True
                )
            except ClientError as exc:
                missing = unknown_instance_ids(exc, remaining)
                if not missing:
                    raise AwsError(f"ec2 DescribeInstanceStatus in {region} failed: {exc}") from exc
                results.update({i: InstanceStatus.not_found(i) for i in missing})
                remaining = [i for i in remaining if i not in missing]
                continue
            found = {
                item["InstanceId"]: InstanceStatus.from_item(item)
                for item in response.get("InstanceStatuses", [])
            }
            results.update({i: found.get(i) or InstanceStatus.not_found(i) for i in remaining})
            break
        return results

    async def describe_instances_by_tags(self, aws_region: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        """Instances (not terminated) carrying all the given tags: id, state and Name tag."""
        instances = await self.list_tagged_instances(aws_region, tags)
        return [
            {"instance_id": i.instance_id, "state": i.state, "name": i.name}
            for i in instances
            if i.state in _LIVE_STATES
        ]

    async def list_tagged_instances(
        self, aws_region: str, tags: dict[str, str], *, include_terminated: bool = False
    ) -> list[TaggedInstance]:
        """Every instance carrying all the tags, with its addresses and tags.

        The tags are filters of the call, so EC2 returns only the fleet's instances, 1000 a page:
        a region of 3000 workers is 3 calls whatever the size of the account.
        """
        filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
        states = [*_LIVE_STATES, *(("shutting-down", "terminated") if include_terminated else ())]
        filters.append({"Name": "instance-state-name", "Values": states})
        found: list[TaggedInstance] = []
        pages = self._pool.pages(
            "ec2", aws_region, "describe_instances", Filters=filters, PaginationConfig={"PageSize": 1000}
        )
        async for response in pages:
            for reservation in response.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    found.append(_tagged_instance(instance))
        return found

    def _not_permitted(self, aws_region: str, instance_id: str, action: str) -> ActionNotPermitted:
        key, value = self._managed_tag
        return ActionNotPermitted(
            f"IAM refused to {action} {instance_id} in {aws_region}: the monitor may stop, start or "
            f"reboot only instances tagged {key}={value}, and this one is missing the tag (or the "
            f"role lacks deploy/iam-policy.json). Add it: aws ec2 create-tags --region {aws_region} "
            f"--resources {instance_id} --tags 'Key={key},Value={value}'"
        )

    async def change_instance_state(self, aws_region: str, instance_id: str, action: str) -> str:
        """`start`, `stop` or `reboot` one instance; returns the state EC2 reports right after
        (a reboot keeps the instance `running`: EC2 answers nothing more)."""
        operation = {"start": "start_instances", "stop": "stop_instances", "reboot": "reboot_instances"}[
            action
        ]
        key = {"start": "StartingInstances", "stop": "StoppingInstances", "reboot": ""}[action]
        try:
            response = await self._pool.call("ec2", aws_region, operation, InstanceIds=[instance_id])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "UnauthorizedOperation":
                raise self._not_permitted(aws_region, instance_id, action) from exc
            raise AwsError(f"ec2 {operation} of {instance_id} in {aws_region} failed: {exc}") from exc
        if action == "reboot":
            return "running"
        changes = response.get(key) or [{}]
        return str(changes[0].get("CurrentState", {}).get("Name", "unknown"))


_LIVE_STATES = ("pending", "running", "stopping", "stopped")


def _tagged_instance(instance: dict[str, Any]) -> TaggedInstance:
    """An instance as discovery and import read it, its strings cleaned of control characters."""
    tags = {clean(t["Key"]): clean(t.get("Value", "")) for t in instance.get("Tags", []) if "Key" in t}
    return TaggedInstance(
        instance_id=clean(instance["InstanceId"]),
        state=clean_optional(instance.get("State", {}).get("Name")),
        name=tags.get("Name"),
        private_ip=clean_optional(instance.get("PrivateIpAddress")) or None,
        public_ip=clean_optional(instance.get("PublicIpAddress")) or None,
        private_dns=clean_optional(instance.get("PrivateDnsName")) or None,
        public_dns=clean_optional(instance.get("PublicDnsName")) or None,
        tags=tags,
    )
