"""EventBridge messages as they arrive in the SQS queue, read into typed changes.

Two kinds matter: `aws.ec2` "EC2 Instance State-change Notification" (`detail.instance-id`,
`detail.state`, the envelope's `time`) and `aws.health` scheduled changes for EC2 instances
(`detail.eventTypeCategory == "scheduledChange"`, the instances in `resources` or
`detail.affectedEntities`). Anything else is foreign; anything that is not this JSON is malformed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cml_monitor.domain.text import clean

STATE_CHANGE = "EC2 Instance State-change Notification"
EC2_STATES = frozenset({"pending", "running", "stopping", "stopped", "shutting-down", "terminated"})


class ForeignMessage(ValueError):
    """Valid JSON, but not an event this monitor reads (another source, another type)."""


class MalformedMessage(ValueError):
    """Not the JSON EventBridge sends."""


@dataclass(frozen=True, slots=True)
class StateChange:
    instance_id: str
    state: str
    time: datetime
    region: str


@dataclass(frozen=True, slots=True)
class ScheduledChange:
    instance_ids: tuple[str, ...]
    event_type: str
    time: datetime


def parse(body: str) -> StateChange | ScheduledChange:
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(envelope, dict) or "detail-type" not in envelope or "source" not in envelope:
        raise ForeignMessage("not an EventBridge event")
    source, kind = envelope["source"], envelope["detail-type"]
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise MalformedMessage("the event has no detail object")
    when = _time(envelope.get("time"))
    if source == "aws.ec2" and kind == STATE_CHANGE:
        instance_id, state = detail.get("instance-id"), detail.get("state")
        if not isinstance(instance_id, str) or not instance_id.startswith("i-") or state not in EC2_STATES:
            raise MalformedMessage(f"state change without a usable instance id or state: {detail!r:.120}")
        return StateChange(clean(instance_id), state, when, clean(str(envelope.get("region", ""))))
    if (
        source == "aws.health"
        and detail.get("eventTypeCategory") == "scheduledChange"
        and detail.get("service") == "EC2"
    ):
        ids = {_instance_of(r) for r in envelope.get("resources") or []}
        ids |= {e.get("entityValue") for e in detail.get("affectedEntities") or [] if isinstance(e, dict)}
        found = tuple(sorted(i for i in ids if isinstance(i, str) and i.startswith("i-")))
        if not found:
            raise MalformedMessage("scheduled change that names no instance")
        return ScheduledChange(found, clean(str(detail.get("eventTypeCode", ""))), when)
    raise ForeignMessage(f"{source} {kind!r} is not read here")


def _instance_of(resource: Any) -> str | None:
    return resource.rsplit("/", 1)[-1] if isinstance(resource, str) and ":instance/" in resource else None


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise MalformedMessage("the event has no time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedMessage(f"unreadable event time {value!r}") from None
    if parsed.tzinfo is None:
        raise MalformedMessage(f"event time {value!r} has no zone")
    return parsed
